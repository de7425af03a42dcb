package layout

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
)

// StoredManifest is one manifest file of a metadata snapshot: a tag file or
// a manifest kept by digest.
type StoredManifest struct {
	Path string // its path in the metadata
	// Ref is ns/project/repo:tag for a tag, ns/project/repo@sha256:<hex>
	// for a manifest kept by digest.
	Ref      opm.Reference
	ID       ID            // the git blob of the file: the same ID, the same bytes
	Digest   digest.Digest // of Body
	Body     []byte
	Manifest *opm.AnyManifest // nil when Err is set
	Err      error            // why the file is not a valid manifest there
}

// ByDigest reports whether the manifest is kept by digest (no tag names it).
func (m *StoredManifest) ByDigest() bool { return m.Ref.Tag == "" }

// Repo is the repository the manifest belongs to.
func (m *StoredManifest) Repo() opm.Repository { return m.Ref.Repository }

// MediaType is the manifest's media type as the one validation read it.
// Bytes that did not pass it are opaque, application/octet-stream: a type
// they name is never repeated (a tag file committed by git could name
// text/html).
func (m *StoredManifest) MediaType() string {
	if m.Manifest != nil {
		return m.Manifest.MediaType
	}
	return opm.MediaTypeOctet
}

// Blobs returns the content blobs the manifest names (its config and
// layers, each once); an index names manifests, not blobs.
func (m *StoredManifest) Blobs() []opm.Descriptor {
	if m.Manifest == nil {
		return nil
	}
	return m.Manifest.Blobs()
}

// ReadManifest reads the manifest file at p of s (its git blob id), which
// holds ref, and checks it (see Stored). Only a failure to read is an error.
func ReadManifest(s Tree, p string, id ID, ref opm.Reference) (*StoredManifest, error) {
	body, err := s.ReadFile(p)
	if err != nil {
		return nil, err
	}
	m, perr := opm.ParseAnyManifest(body, "")
	return Stored(p, id, ref, body, digest.FromBytes(body), m, perr), nil
}

// Stored is the manifest file p (git blob id, bytes body of digest d,
// parsed as m or failing with perr) as the reference ref: it must parse as
// a manifest the registry accepts, and one kept by digest must hash to its
// name. A file that fails a check has Err set and no Manifest.
func Stored(p string, id ID, ref opm.Reference, body []byte, d digest.Digest, m *opm.AnyManifest, perr error) *StoredManifest {
	sm := &StoredManifest{Path: p, Ref: ref, ID: id, Body: body, Digest: d, Manifest: m, Err: perr}
	if perr != nil {
		sm.Manifest = nil
	} else if ref.Digest != "" && sm.Digest != ref.Digest {
		sm.Manifest, sm.Err = nil, opm.Errorf(opm.ErrIntegrity, "content hashes to %s, not the digest its name says", sm.Digest)
	}
	return sm
}

// Oddity is a path of the metadata that the layout does not allow.
type Oddity struct {
	Path   string
	Detail string
}

// Walk calls fn for every manifest file of the tree, in tree order, and
// odd (if not nil) for every path that does not belong in the layout (an
// invalid name, a file where a directory belongs). A file that fails to
// parse is passed to fn with Err set. It stops at the first error fn or odd
// returns, or when ctx is done. With odd, description files that break
// CheckMeta are reported too.
func Walk(ctx context.Context, s Tree, fn func(*StoredManifest) error, odd func(Oddity) error) error {
	report := func(p, detail string) error {
		if odd == nil {
			return nil
		}
		return odd(Oddity{Path: p, Detail: detail})
	}
	// walkLevel lists the node at depth and calls next for every valid
	// sub-directory.
	var walkLevel func(parts []string) error
	walkLevel = func(parts []string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(parts) == 3 {
			return walkRepository(s, opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}, fn, report, odd != nil)
		}
		dir := joinPath(parts)
		entries, err := s.ReadDir(dir)
		if err != nil {
			return err
		}
		what := LevelNames[len(parts)+1]
		for _, e := range entries {
			p := joinPath(append(parts[:len(parts):len(parts)], e.Name))
			switch {
			case !e.Dir && IsMetaFile(len(parts), e.Name):
				// namespace.json, project.json: optional descriptions.
				if odd != nil {
					err = checkMetaEntry(s, p, len(parts), report)
				}
			case !e.Dir && len(parts) == 0 && e.Name != "" && e.Name[0] == '.':
				// .gitattributes and the like at the top are git's.
			case !e.Dir:
				err = report(p, "a file where a "+what+" directory belongs")
			case !opm.ValidComponent(e.Name):
				err = report(p, "invalid "+what+" name")
			default:
				err = walkLevel(append(parts[:len(parts):len(parts)], e.Name))
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return walkLevel(nil)
}

func walkRepository(s Tree, repo opm.Repository, fn func(*StoredManifest) error, report func(p, detail string) error, checkMeta bool) error {
	entries, err := s.ReadDir(repo.Path())
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := repo.Path() + "/" + e.Name
		switch {
		case e.Dir && e.Name == tagsDir:
			err = walkFiles(s, p, func(e Entry) (opm.Reference, string) {
				tag, ok := TagOfEntry(e)
				if !ok {
					return opm.Reference{}, "not <tag>.json with a valid tag"
				}
				return opm.Reference{Repository: repo, Tag: tag}, ""
			}, fn, report)
		case e.Dir && e.Name == manifestsDir:
			err = walkFiles(s, p, func(e Entry) (opm.Reference, string) {
				d, ok := digestOfEntry(e)
				if !ok {
					return opm.Reference{}, "not <sha256 hex>.json"
				}
				return opm.Reference{Repository: repo, Digest: d}, ""
			}, fn, report)
		case !e.Dir && IsMetaFile(3, e.Name):
			// repository.json: the optional description.
			if checkMeta {
				err = checkMetaEntry(s, p, 3, report)
			}
		default:
			err = report(p, "unexpected entry in a repository (want tags/, manifests/ and repository.json)")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// walkFiles calls fn for each file of dir that name accepts (returning the
// reference of the file, or why it is refused).
func walkFiles(s Tree, dir string, name func(Entry) (opm.Reference, string), fn func(*StoredManifest) error, report func(p, detail string) error) error {
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
		m, err := ReadManifest(s, p, e.ID, ref)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

func joinPath(parts []string) string {
	p := ""
	for i, s := range parts {
		if i > 0 {
			p += "/"
		}
		p += s
	}
	return p
}
