package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/registry"
)

// The OPM listing API. Every level is a JSON object with the level's name,
// its labels and description (from namespace.json, project.json,
// repository.json when present), and its children with counts and sizes.

// Node is a namespace, project or repository of a listing.
type Node struct {
	Name        string         `json:"name"`
	Path        string         `json:"path"`
	Description string         `json:"description,omitempty"`
	Labels      map[string]any `json:"labels,omitempty"`
	Meta        map[string]any `json:"meta,omitempty"` // the whole *.json file
	Children    int            `json:"children"`       // projects, repositories or tags
	// Size, of a repository, is the total size of the distinct blobs its
	// tags name (what the repository costs in the store).
	Size int64 `json:"size,omitempty"`
}

// TagSummary is one tag of a repository.
type TagSummary struct {
	Name      string        `json:"name"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Files     int           `json:"files"`
	Date      time.Time     `json:"date,omitzero"`
	Commit    string        `json:"commit,omitempty"`
}

// TagDetail is one tag: its descriptor, files and history.
type TagDetail struct {
	Repository string              `json:"repository"`
	TagSummary                     // name, digest, size, …
	Descriptor opm.Descriptor      `json:"descriptor"`
	Files      []FileEntry         `json:"files"`
	Layers     []opm.Descriptor    `json:"layers,omitempty"`    // blobs without a title
	Manifests  []opm.Descriptor    `json:"manifests,omitempty"` // an index's children
	History    []registry.LogEntry `json:"history"`
	Manifest   json.RawMessage     `json:"manifest"`
}

// FileEntry is one file of a package.
type FileEntry struct {
	Path    string        `json:"path"`
	Size    int64         `json:"size"`
	Mode    string        `json:"mode"`
	Digest  digest.Digest `json:"digest"`
	Symlink string        `json:"symlink,omitempty"`
}

var metaFiles = [3]string{"namespace.json", "project.json", "repository.json"}

// node reads a level's metadata file and counts its children.
func (s *Server) node(snap *gitmeta.Snapshot, parts []string) (Node, error) {
	p := strings.Join(parts, "/")
	n := Node{Name: parts[len(parts)-1], Path: p}
	if b, err := snap.ReadFile(p + "/" + metaFiles[len(parts)-1]); err == nil {
		if json.Unmarshal(b, &n.Meta) == nil {
			n.Description, _ = n.Meta["description"].(string)
			n.Labels, _ = n.Meta["labels"].(map[string]any)
		}
	}
	if len(parts) == 3 {
		c, err := s.countTags(snap, p+"/tags")
		n.Children, n.Size = c.tags, c.size
		return n, err
	}
	kids, err := children(snap, p)
	n.Children = len(kids)
	return n, err
}

// tagCounts are a repository's number of tags and the total size of the
// distinct blobs they name.
type tagCounts struct {
	tags int
	size int64
}

// countTags counts the tags directory dir. The counts are cached by the
// directory's git tree hash: the same tree always counts the same, so a
// listing reads a repository's manifests once, not on every request.
func (s *Server) countTags(snap *gitmeta.Snapshot, dir string) (tagCounts, error) {
	var c tagCounts
	e, err := snap.Stat(dir)
	if errors.Is(err, opm.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	s.countsMu.Lock()
	c, ok := s.counts[e.Hash]
	s.countsMu.Unlock()
	if ok {
		return c, nil
	}
	entries, err := snap.ReadDir(dir)
	if err != nil {
		return c, err
	}
	seen := map[digest.Digest]bool{}
	for _, e := range entries {
		if _, ok := registry.TagOfEntry(e); !ok {
			continue
		}
		c.tags++
		b, err := snap.ReadFile(dir + "/" + e.Name)
		if err != nil {
			return c, err
		}
		if m, err := opm.ParseAnyManifest(b, ""); err == nil {
			for _, bl := range m.Blobs() {
				if !seen[bl.Digest] {
					seen[bl.Digest] = true
					c.size += bl.Size
				}
			}
		}
	}
	s.countsMu.Lock()
	if s.counts == nil || len(s.counts) > 1<<16 {
		s.counts = map[plumbing.Hash]tagCounts{}
	}
	s.counts[e.Hash] = c
	s.countsMu.Unlock()
	return c, nil
}

// children lists the valid child names of a level ("" is the root).
func children(snap *gitmeta.Snapshot, p string) ([]string, error) {
	entries, err := snap.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Dir && opm.ValidComponent(e.Name) {
			out = append(out, e.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// levelNodes lists the nodes below parts (nil: the namespaces).
func (s *Server) levelNodes(snap *gitmeta.Snapshot, parts []string) ([]Node, error) {
	p := strings.Join(parts, "/")
	names, err := children(snap, p)
	if errors.Is(err, opm.ErrNotFound) {
		if p == "" {
			return []Node{}, nil
		}
		return nil, fmt.Errorf("%s: %w", p, opm.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(names))
	for _, name := range names {
		n, err := s.node(snap, append(append([]string{}, parts...), name))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// tagSummaries lists a repository's tags, sorted by name.
func (s *Server) tagSummaries(ctx context.Context, snap *gitmeta.Snapshot, repo opm.Repository) ([]TagSummary, error) {
	entries, err := snap.ReadDir(opm.TagsDir(repo))
	if errors.Is(err, opm.ErrNotFound) {
		if _, err := snap.Stat(repo.Path()); err != nil {
			return nil, fmt.Errorf("%s: no such repository: %w", repo, opm.ErrNotFound)
		}
		return []TagSummary{}, nil
	}
	if err != nil {
		return nil, err
	}
	times, err := s.reg.TagTimes(ctx, snap, repo)
	if err != nil {
		return nil, err
	}
	out := []TagSummary{}
	for _, e := range entries {
		t, ok := registry.TagOfEntry(e)
		if !ok {
			continue
		}
		b, err := snap.ReadFile(opm.TagsDir(repo) + "/" + e.Name)
		if err != nil {
			return nil, err
		}
		ts, _, _ := summarize(t, b)
		if tt, ok := times[t]; ok {
			ts.Date, ts.Commit = tt.When, tt.Commit.String()
		}
		out = append(out, ts)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// summarize describes a tag's manifest b, and returns it decoded: m is nil
// if opm cannot read it, pm nil unless it is an opm package.
func summarize(tag string, b []byte) (ts TagSummary, m *opm.AnyManifest, pm *opm.Manifest) {
	ts = TagSummary{Name: tag, Digest: digest.FromBytes(b), MediaType: manifestType(b)}
	m, err := opm.ParseAnyManifest(b, "")
	if err != nil {
		return ts, nil, nil
	}
	ts.Size = m.Size()
	if pm = m.Package(); pm != nil {
		ts.Files = len(pm.Files())
	}
	return ts, m, pm
}

// tagDetail describes one tag, with its history (newest first, at most 50).
func (s *Server) tagDetail(ctx context.Context, snap *gitmeta.Snapshot, repo opm.Repository, tag string) (*TagDetail, error) {
	b, err := snap.ReadFile(opm.TagPath(repo, tag))
	if errors.Is(err, opm.ErrNotFound) {
		return nil, fmt.Errorf("%s:%s: no such tag: %w", repo, tag, opm.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	ts, m, pm := summarize(tag, b)
	td := &TagDetail{Repository: repo.Path(), TagSummary: ts, Manifest: json.RawMessage(b), Files: []FileEntry{}}
	td.Descriptor = opm.Descriptor{MediaType: td.MediaType, Digest: td.Digest, Size: int64(len(b))}
	if m != nil {
		td.Descriptor.ArtifactType = m.ArtifactType
		td.Manifests = m.Manifests
		for _, l := range m.Layers {
			if _, ok := l.Annotations[opm.AnnotationTitle]; !ok {
				td.Layers = append(td.Layers, opm.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
			}
		}
	}
	if pm != nil {
		for _, f := range pm.Files() {
			td.Files = append(td.Files, FileEntry{Path: f.Path, Size: f.Size, Mode: opm.FormatMode(f.Mode), Digest: f.Digest, Symlink: f.Symlink})
		}
	}
	td.History, err = s.reg.Log(ctx, repo.Path()+":"+tag, 50)
	if err != nil {
		return nil, err
	}
	if td.History == nil {
		td.History = []registry.LogEntry{}
	}
	// The newest change of the tag's file set it. The log is of the head,
	// which may have moved since snap: then ask snap's history.
	if len(td.History) > 0 && td.History[0].Digest == td.Digest {
		td.Date, td.Commit = td.History[0].Date, td.History[0].Commit
	} else if times, err := s.reg.TagTimes(ctx, snap, repo); err == nil {
		if tt, ok := times[tag]; ok {
			td.Date, td.Commit = tt.When, tt.Commit.String()
		}
	}
	return td, nil
}

// listingPath splits /namespaces/<ns>/projects/<p>/repositories/<r>/tags/<t>.
// It returns the name parts and the tag, or an error.
func listingPath(p string) (parts []string, tag string, err error) {
	seg := strings.Split(strings.Trim(p, "/"), "/")
	keys := []string{"namespaces", "projects", "repositories", "tags"}
	for i, s := range seg {
		if i%2 == 0 {
			if i/2 >= len(keys) || s != keys[i/2] {
				return nil, "", fmt.Errorf("no such listing path %q: %w", p, opm.ErrNotFound)
			}
			continue
		}
		if i/2 == 3 {
			if !opm.ValidTag(s) {
				return nil, "", fmt.Errorf("tag %q is not a valid tag: %w", s, opm.ErrInvalid)
			}
			tag = s
			continue
		}
		if !opm.ValidComponent(s) {
			return nil, "", fmt.Errorf("%s %q is not a valid name: %w", strings.TrimSuffix(keys[i/2], "s"), s, opm.ErrInvalid)
		}
		parts = append(parts, s)
	}
	if len(seg)%2 == 0 && tag == "" {
		// ends with a name: /namespaces/acme is the namespace itself
		return parts, "", errNodeItself
	}
	return parts, tag, nil
}

var errNodeItself = errors.New("node itself")

// Listing is the answer of a listing level.
type Listing struct {
	Path  string       `json:"path"`
	Kind  string       `json:"kind"` // namespaces, projects, repositories, tags
	Node  *Node        `json:"node,omitempty"`
	Items []Node       `json:"items,omitempty"`
	Tags  []TagSummary `json:"tags,omitempty"`
}

// listing builds the listing below parts (0 to 3 names).
func (s *Server) listing(ctx context.Context, snap *gitmeta.Snapshot, parts []string) (*Listing, error) {
	l := &Listing{Path: strings.Join(parts, "/"), Kind: [4]string{"namespaces", "projects", "repositories", "tags"}[len(parts)]}
	if len(parts) > 0 {
		if _, err := snap.Stat(l.Path); err != nil {
			return nil, fmt.Errorf("%s: no such %s: %w", l.Path, [4]string{"", "namespace", "project", "repository"}[len(parts)], opm.ErrNotFound)
		}
		n, err := s.node(snap, parts)
		if err != nil {
			return nil, err
		}
		l.Node = &n
	}
	var err error
	if len(parts) == 3 {
		l.Tags, err = s.tagSummaries(ctx, snap, opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]})
	} else {
		l.Items, err = s.levelNodes(snap, parts)
	}
	return l, err
}

func (s *Server) serveListing(w http.ResponseWriter, r *http.Request) {
	parts, tag, err := listingPath(r.URL.Path)
	if errors.Is(err, errNodeItself) {
		err = nil
	}
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	snap, err := s.snapshot()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	if tag != "" {
		td, err := s.tagDetail(r.Context(), snap, opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}, tag)
		if err != nil {
			s.fail(w, r, err, "MANIFEST_UNKNOWN", "TAG_INVALID")
			return
		}
		writeJSON(w, r, "application/json", td)
		return
	}
	l, err := s.listing(r.Context(), snap, parts)
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	// Pagination over the items (or tags), by name.
	var ok bool
	if len(parts) == 3 {
		l.Tags, ok = page(w, r, l.Tags, func(t TagSummary) string { return t.Name })
	} else {
		l.Items, ok = page(w, r, l.Items, func(n Node) string { return n.Name })
	}
	if !ok {
		return
	}
	writeJSON(w, r, "application/json", l)
}
