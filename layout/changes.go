package layout

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
)

// TagChange is a manifest file that differs between two commits: a tag
// file, or a manifest kept by digest.
type TagChange struct {
	Ref  opm.Reference // a tag, or a digest for a manifest kept by digest
	Path string        // its file in the metadata
	// Body is the manifest at the newer commit, Blobs the blobs it names;
	// both are nil for a removed file.
	Body  []byte
	Blobs []opm.Descriptor
}

// Removed reports whether the change removes the file.
func (c TagChange) Removed() bool { return c.Body == nil }

// Changes lists the manifest files among the files that differ between two
// trees (diff), with their manifests as the newer tree, at, holds them: the
// tag files whose references match (nil matches every tag) and the
// manifests kept by digest: with a nil match every one (what a commit
// carries whole must have its blobs), else those referring to a chosen tag
// (below). Only the subtrees that differ are
// read. Every manifest is checked as a push would check it: a name that
// breaks the rules, a manifest the registry would refuse or one kept by
// digest that does not hash to its name fails the whole listing, so that
// nothing a push would refuse is taken from elsewhere. When match is nil
// every other file the newer tree changes is checked too (CheckMeta for a
// description file; a file with no place in the layout fails the listing).
//
// With a match, a manifest kept by digest that the newer tree adds or
// changes is listed too when it refers (its subject) to a manifest a tag the
// match chooses holds there: a Helm chart's files, a signature or an SBOM
// travel with their tag.
func Changes(diff []FileChange, at Tree, match func(opm.Reference) bool) ([]TagChange, error) {
	var out []TagChange
	chosen := chosenDigests(at, match)
	for _, d := range diff {
		p, err := Parse(d.Path)
		if err != nil {
			return nil, err
		}
		if !p.IsManifest() && match == nil && !d.Removed() {
			if err := checkFile(at, p, d.Path); err != nil {
				return nil, err
			}
		}
		if !p.IsManifest() || match != nil && p.Role == RoleTag && !match(p.Ref) {
			continue
		}
		var m *StoredManifest
		if !d.Removed() {
			if m, err = ReadManifest(at, d.Path, d.New, p.Ref); err != nil {
				return nil, err
			}
		}
		if match != nil && p.Role == RoleManifest {
			// Only one that refers to a chosen tag's manifest; never a removal.
			if m == nil || m.Manifest == nil || m.Manifest.Subject == nil {
				continue
			}
			ok, err := chosen(p.Ref.Repository, m.Manifest.Subject.Digest)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		c := TagChange{Ref: p.Ref, Path: d.Path}
		if m != nil {
			if m.Err != nil {
				return nil, fmt.Errorf("%s: %w", p.Ref, m.Err)
			}
			c.Body, c.Blobs = m.Body, m.Blobs()
		}
		out = append(out, c)
	}
	return out, nil
}

// chosenDigests returns a function telling whether a tag match chooses
// holds digest d in repo at the tree at; each repository's tags are read
// once, when first asked.
func chosenDigests(at Tree, match func(opm.Reference) bool) func(opm.Repository, digest.Digest) (bool, error) {
	byRepo := map[opm.Repository]map[digest.Digest]bool{}
	return func(repo opm.Repository, d digest.Digest) (bool, error) {
		held, ok := byRepo[repo]
		if !ok {
			held = map[digest.Digest]bool{}
			entries, err := at.ReadDir(TagsDir(repo))
			if err != nil && !errors.Is(err, opm.ErrNotFound) {
				return false, err
			}
			for _, e := range entries {
				t, ok := TagOfFile(e.Name)
				if !ok || e.Dir || !match(opm.Reference{Repository: repo, Tag: t}) {
					continue
				}
				b, err := at.ReadFile(TagsDir(repo) + "/" + e.Name)
				if err != nil {
					return false, err
				}
				held[digest.FromBytes(b)] = true
			}
			byRepo[repo] = held
		}
		return held[d], nil
	}
}

// Blobs lists the blobs the changes name, each once, in order.
func Blobs(changes []TagChange) []opm.Descriptor {
	seen := map[digest.Digest]bool{}
	var out []opm.Descriptor
	for _, c := range changes {
		for _, b := range c.Blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				out = append(out, b)
			}
		}
	}
	return out
}

// Stale is what a move of the head changed among the names of the tree:
// the mount tells the kernel to forget exactly these.
type Stale struct {
	// Nodes are the namespaces, projects and repositories (1 to 3 name
	// parts) that appeared or went away; only the outermost of a path.
	Nodes [][]string
	// Tags are the tags set, moved or removed in repositories that stayed.
	Tags []opm.Reference
}

// StaleNames finds what the files that differ between two trees (diff)
// changed among the names of
// the tree. Whether a node appeared or went away is asked once per node,
// however many of its files changed.
func StaleNames(old, cur Tree, diff []FileChange) Stale {
	isDir := func(s Tree, p string) bool {
		e, err := s.Stat(p)
		return err == nil && e.Dir
	}
	moved := map[string]bool{}
	changed := func(p string) bool {
		c, ok := moved[p]
		if !ok {
			c = isDir(old, p) != isDir(cur, p)
			moved[p] = c
		}
		return c
	}
	var out Stale
	seenNode := map[string]bool{}
	seenTag := map[opm.Reference]bool{}
	for _, d := range diff {
		parts := strings.Split(d.Path, "/")
		node := false
		for i := 0; i < 3 && i < len(parts)-1; i++ {
			p := strings.Join(parts[:i+1], "/")
			if changed(p) {
				if !seenNode[p] {
					seenNode[p] = true
					out.Nodes = append(out.Nodes, parts[:i+1])
				}
				node = true
				break
			}
		}
		if node {
			continue
		}
		if p, err := Parse(d.Path); err == nil && p.Role == RoleTag && !seenTag[p.Ref] {
			seenTag[p.Ref] = true
			out.Tags = append(out.Tags, p.Ref)
		}
	}
	return out
}
