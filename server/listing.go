package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

// The OPM listing API. Every level is a JSON object with the level's name,
// its labels and description (from namespace.json, project.json,
// repository.json when present), and its children with counts and sizes.
// The registry computes them (registry.View's Node, TagSummaries); this
// file gives them the API's shape.

// Node is a namespace, project or repository of a listing.
type Node = registry.Node

// TagSummary is one tag of a repository.
type TagSummary = registry.TagSummary

// TagDetail is one tag: its descriptor, files and history.
type TagDetail struct {
	Repository string              `json:"repository"`
	TagSummary                     // name, digest, size, …
	Descriptor opm.Descriptor      `json:"descriptor"`
	Files      []FileEntry         `json:"files"`
	Layers     []opm.Descriptor    `json:"layers,omitempty"`    // blobs without a title
	Manifests  []opm.Descriptor    `json:"manifests,omitempty"` // an index's children
	Referrers  []opm.Descriptor    `json:"referrers"`           // manifests whose subject it is: signatures, SBOMs, provenance
	History    []registry.LogEntry `json:"history"`
	Manifest   json.RawMessage     `json:"manifest"`
	// Chart is a Helm chart's Chart.yaml, values.yaml and README.md, read
	// from inside its archive; ChartError says why they could not be.
	Chart      *registry.Chart `json:"chart,omitempty"`
	ChartError string          `json:"chart_error,omitempty"`
}

// FileEntry is one file of a package.
type FileEntry struct {
	Path    string        `json:"path"`
	Size    int64         `json:"size"`
	Mode    string        `json:"mode"`
	Digest  digest.Digest `json:"digest"`
	Symlink string        `json:"symlink,omitempty"`
	MTime   *time.Time    `json:"mtime,omitempty"` // when the package records it
}

// tagDetail describes one tag, with its history (newest first, at most 50).
func tagDetail(ctx context.Context, v *registry.View, repo opm.Repository, tag string) (*TagDetail, error) {
	m, err := v.Manifest(opm.Reference{Repository: repo, Tag: tag})
	if err != nil {
		return nil, err
	}
	td := &TagDetail{Repository: repo.Path(), TagSummary: registry.Summarize(tag, m), Manifest: json.RawMessage(m.Body), Files: []FileEntry{}}
	td.Descriptor = opm.Descriptor{MediaType: td.MediaType, Digest: td.Digest, Size: int64(len(m.Body))}
	if am := m.Manifest; am != nil {
		td.Descriptor.ArtifactType = am.ArtifactType
		td.Manifests = am.Manifests
		for _, l := range am.Layers {
			if _, ok := l.Annotations[opm.AnnotationTitle]; !ok {
				td.Layers = append(td.Layers, opm.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
			}
		}
		pm, err := v.FilesView(repo, m)
		if err != nil {
			return nil, err
		}
		if pm != nil {
			for _, f := range pm.Files() {
				fe := FileEntry{Path: f.Path, Size: f.Size, Mode: opm.FormatMode(f.Mode), Digest: f.Digest, Symlink: f.Symlink}
				if !f.ModTime.IsZero() {
					fe.MTime = &f.ModTime
				}
				td.Files = append(td.Files, fe)
			}
		}
	}
	if td.Chart, err = v.ChartFiles(ctx, m.Manifest); err != nil {
		td.ChartError = opm.OneLine(err)
	}
	if td.Referrers, err = v.Referrers(repo, td.Digest, ""); err != nil {
		return nil, err
	}
	if td.History, err = v.Log(ctx, repo.Path()+":"+tag, 50); err != nil {
		return nil, err
	}
	if td.History == nil {
		td.History = []registry.LogEntry{}
	}
	if times, err := v.TagTimes(ctx, repo); err == nil {
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
				return nil, "", opm.Errorf(opm.ErrNotFound, "no such listing path %q", p)
			}
			continue
		}
		if i/2 == 3 {
			if !opm.ValidTag(s) {
				return nil, "", opm.Errorf(opm.ErrInvalid, "tag %q: %s", s, opm.TagRule)
			}
			tag = s
			continue
		}
		if !opm.ValidComponent(s) {
			return nil, "", opm.Errorf(opm.ErrInvalid, "%s %q is not a valid name", strings.TrimSuffix(keys[i/2], "s"), s)
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

// describeHTTP sets the description of the node a listing path names
// (PUT /namespaces/<ns>[/projects/<p>[/repositories/<r>]], a write: it
// needs the write token) to the JSON object of the body: one commit
// (registry.Describe). It answers the node as GET does.
func (s *Server) describeHTTP(w http.ResponseWriter, r *http.Request) {
	parts, _, err := listingPath(r.URL.Path)
	if !errors.Is(err, errNodeItself) {
		if err == nil {
			err = opm.Errorf(opm.ErrInvalid, "PUT a description to a namespace, project or repository: /namespaces/<ns>[/projects/<p>[/repositories/<r>]]")
		}
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, layout.MaxMetaSize+1))
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "UNSUPPORTED")
		return
	}
	if _, err := s.reg.Describe(r.Context(), parts, body); err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "UNSUPPORTED")
		return
	}
	v, err := s.reg.View()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "UNSUPPORTED")
		return
	}
	n, err := v.Node(parts)
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "UNSUPPORTED")
		return
	}
	writeJSON(w, r, "application/json", n)
}

// Listing is the answer of a listing level.
type Listing struct {
	Path  string       `json:"path"`
	Kind  string       `json:"kind"` // namespaces, projects, repositories, tags
	Node  *Node        `json:"node,omitempty"`
	Items []Node       `json:"items,omitempty"`
	Tags  []TagSummary `json:"tags,omitempty"`
}

// listing builds the listing below parts (0 to 3 names), a repository's
// tags in order (registry.SortVersion when "").
func listing(ctx context.Context, v *registry.View, parts []string, order string) (*Listing, error) {
	l := &Listing{Path: strings.Join(parts, "/"), Kind: layout.LevelKinds[len(parts)]}
	if len(parts) > 0 {
		n, err := v.Node(parts)
		if err != nil {
			return nil, err
		}
		l.Node = &n
	}
	var err error
	if len(parts) == 3 {
		if l.Tags, err = v.TagSummaries(ctx, opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}); err == nil && order != "" {
			err = registry.SortSummaries(l.Tags, order)
		}
	} else if l.Items, err = v.Nodes(parts); err == nil && l.Items == nil {
		l.Items = []Node{}
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
	v, err := s.reg.View()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	if tag != "" {
		td, err := tagDetail(r.Context(), v, opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}, tag)
		if err != nil {
			s.fail(w, r, err, "MANIFEST_UNKNOWN", "TAG_INVALID")
			return
		}
		writeJSON(w, r, "application/json", td)
		return
	}
	order := r.URL.Query().Get("sort")
	l, err := listing(r.Context(), v, parts, order)
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	// Pagination over the items, by name, or the tags, in their order.
	var ok bool
	if len(parts) == 3 {
		l.Tags, ok = pageAfter(w, r, l.Tags, func(t TagSummary) string { return t.Name }, func(last string) int {
			for i, t := range l.Tags {
				if t.Name == last {
					return i + 1
				}
			}
			// last is no longer a tag: from the first that comes after it in
			// version order.
			for i, t := range l.Tags {
				if opm.CompareTags(t.Name, last) > 0 {
					return i
				}
			}
			return len(l.Tags)
		})
	} else {
		l.Items, ok = page(w, r, l.Items, func(n Node) string { return n.Name })
	}
	if !ok {
		return
	}
	writeJSON(w, r, "application/json", l)
}
