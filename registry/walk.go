package registry

import (
	"context"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
)

// StoredManifest is one manifest file of a metadata snapshot: a tag file
// (ns/project/repo/tags/<tag>.json) or a manifest kept by digest
// (ns/project/repo/manifests/<hex>.json).
type StoredManifest struct {
	Path string // its path in the metadata
	// Ref is ns/project/repo:tag for a tag, ns/project/repo@sha256:<hex>
	// for a manifest kept by digest.
	Ref      string
	Repo     opm.Repository
	Digest   digest.Digest // of Body
	Body     []byte
	Manifest *opm.AnyManifest // nil when Err is set
	Err      error            // why the file is not a valid manifest there
}

// ByDigest reports whether the manifest is kept by digest (no tag names it).
func (m *StoredManifest) ByDigest() bool { return strings.Contains(m.Ref, "@") }

// Blobs returns the content blobs the manifest names (its config and
// layers); an index names manifests, not blobs.
func (m *StoredManifest) Blobs() []opm.Descriptor {
	if m.Manifest == nil {
		return nil
	}
	var out []opm.Descriptor
	if m.Manifest.Config != nil {
		out = append(out, *m.Manifest.Config)
	}
	return append(out, m.Manifest.Layers...)
}

// Oddity is a path of the metadata that the layout does not allow.
type Oddity struct {
	Path   string
	Detail string
}

// WalkManifests calls fn for every manifest file of the snapshot, in tree
// order, and odd (if not nil) for every path that does not belong in the
// layout (an invalid name, a file where a directory belongs). A file that
// fails to parse is passed to fn with Err set. It stops at the first error
// fn or odd returns, or when ctx is done.
func WalkManifests(ctx context.Context, s *gitmeta.Snapshot, fn func(*StoredManifest) error, odd func(Oddity) error) error {
	report := func(p, detail string) error {
		if odd == nil {
			return nil
		}
		return odd(Oddity{Path: p, Detail: detail})
	}
	// walkLevel lists dir and calls next for every valid sub-directory.
	walkLevel := func(dir, what string, next func(child string) error) error {
		entries, err := s.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := joinPath(dir, e.Name)
			switch {
			case !e.Dir:
				if dir == "" && strings.HasPrefix(e.Name, ".") {
					continue // .gitattributes and the like at the top are git's
				}
				err = report(p, "a file where a "+what+" directory belongs")
			case !opm.ValidComponent(e.Name):
				err = report(p, "invalid "+what+" name")
			default:
				err = next(p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return walkLevel("", "namespace", func(ns string) error {
		return walkLevel(ns, "project", func(project string) error {
			return walkLevel(project, "repository", func(repoPath string) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				repo, err := opm.ParseRepository(repoPath)
				if err != nil {
					return report(repoPath, err.Error())
				}
				return walkRepository(s, repo, fn, report)
			})
		})
	})
}

func walkRepository(s *gitmeta.Snapshot, repo opm.Repository, fn func(*StoredManifest) error, report func(p, detail string) error) error {
	entries, err := s.ReadDir(repo.Path())
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := repo.Path() + "/" + e.Name
		switch {
		case e.Dir && e.Name == "tags":
			err = walkFiles(s, p, func(e gitmeta.Entry) (string, string) {
				tag, ok := TagOfEntry(e)
				if !ok {
					return "", "not <tag>.json with a valid tag"
				}
				return repo.Path() + ":" + tag, ""
			}, repo, fn, report)
		case e.Dir && e.Name == "manifests":
			err = walkFiles(s, p, func(e gitmeta.Entry) (string, string) {
				hex, ok := strings.CutSuffix(e.Name, ".json")
				d := digest.NewDigestFromEncoded(digest.SHA256, hex)
				if !ok || d.Validate() != nil {
					return "", "not <sha256 hex>.json"
				}
				return repo.Path() + "@" + d.String(), ""
			}, repo, fn, report)
		default:
			err = report(p, "unexpected entry in a repository (want tags/ and manifests/)")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// walkFiles calls fn for each file of dir that name accepts (returning the
// reference of the file, or why it is refused).
func walkFiles(s *gitmeta.Snapshot, dir string, name func(gitmeta.Entry) (ref, bad string), repo opm.Repository, fn func(*StoredManifest) error, report func(p, detail string) error) error {
	entries, err := s.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := dir + "/" + e.Name
		ref, bad := name(e)
		if e.Dir {
			bad = "a directory where a manifest file belongs"
		}
		if bad != "" {
			if err := report(p, bad); err != nil {
				return err
			}
			continue
		}
		m := &StoredManifest{Path: p, Ref: ref, Repo: repo}
		if m.Body, err = s.ReadFile(p); err != nil {
			return err
		}
		m.Digest = digest.FromBytes(m.Body)
		m.Manifest, m.Err = opm.ParseAnyManifest(m.Body, "")
		if m.Err == nil && m.ByDigest() {
			if _, want, _ := strings.Cut(ref, "@"); want != m.Digest.String() {
				m.Manifest, m.Err = nil, fmt.Errorf("content hashes to %s, not the digest its name says: %w", m.Digest, opm.ErrIntegrity)
			}
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
