package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
)

// The listing of the registry: what `opm ls` prints and the OPM listing API
// and the web pages show. Both read it here.

// Node is a namespace, project or repository: its description file's
// content and its children.
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
	Kind      string        `json:"kind"` // opm.AnyManifest.Kind: "opm package", "container image", …
	Size      int64         `json:"size"`
	Files     int           `json:"files"`
	Date      time.Time     `json:"date,omitzero"`
	Commit    string        `json:"commit,omitempty"`
}

// Node describes one namespace, project or repository (1 to 3 name parts).
func (v *View) Node(parts []string) (Node, error) {
	p := strings.Join(parts, "/")
	n := Node{Name: parts[len(parts)-1], Path: p}
	ok, err := v.HasNode(parts)
	if err != nil {
		return n, err
	}
	if !ok {
		return n, opm.Errorf(opm.ErrNotFound, "%s: no such %s", p, layout.LevelNames[len(parts)])
	}
	b, err := v.NodeMeta(parts)
	if err != nil {
		return n, err
	}
	if b != nil && json.Unmarshal(b, &n.Meta) == nil {
		n.Description, _ = n.Meta["description"].(string)
		n.Labels, _ = n.Meta["labels"].(map[string]any)
	}
	if len(parts) == 3 {
		c, err := v.countTags(opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]})
		n.Children, n.Size = c.tags, c.size
		return n, err
	}
	kids, err := v.Children(parts)
	n.Children = len(kids)
	return n, err
}

// Nodes describes the nodes below parts (nil: the namespaces).
func (v *View) Nodes(parts []string) ([]Node, error) {
	names, err := v.Children(parts)
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(names))
	for _, name := range names {
		n, err := v.Node(append(parts[:len(parts):len(parts)], name))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// tagCounts are a repository's number of tags and the total size of the
// distinct blobs they name.
type tagCounts struct {
	tags int
	size int64
}

// countCache keeps tag counts by the git tree of a tags directory: the same
// tree always counts the same, so a listing reads a repository's manifests
// once, not on every request.
type countCache struct {
	mu sync.Mutex
	m  map[Hash]tagCounts
}

func (v *View) countTags(repo opm.Repository) (tagCounts, error) {
	var c tagCounts
	e, err := v.snap.Stat(layout.TagsDir(repo))
	if errors.Is(err, opm.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	cc := &v.r.counts
	cc.mu.Lock()
	c, ok := cc.m[e.Hash]
	cc.mu.Unlock()
	if ok {
		return c, nil
	}
	tags, err := v.Tags(repo)
	if err != nil {
		return c, err
	}
	seen := map[digest.Digest]bool{}
	for _, t := range tags {
		c.tags++
		m, err := v.read(layout.TagPath(repo, t.Tag), t.ID, opm.Reference{Repository: repo, Tag: t.Tag})
		if err != nil {
			return c, err
		}
		for _, b := range m.Blobs() {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				c.size += b.Size
			}
		}
	}
	cc.mu.Lock()
	if cc.m == nil || len(cc.m) > 1<<16 {
		cc.m = map[Hash]tagCounts{}
	}
	cc.m[e.Hash] = c
	cc.mu.Unlock()
	return c, nil
}

// TagSummaries lists a repository's tags in version order (SortVersion),
// each with what its manifest holds and when it was set. A repository that does not exist
// is an opm.ErrNotFound error; one with no tags has none.
func (v *View) TagSummaries(ctx context.Context, repo opm.Repository) ([]TagSummary, error) {
	tags, err := v.Tags(repo)
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		if ok, err := v.HasNode([]string{repo.Namespace, repo.Project, repo.Name}); err != nil || !ok {
			if err == nil {
				err = opm.Errorf(opm.ErrNotFound, "%s: no such repository", repo)
			}
			return nil, err
		}
		return []TagSummary{}, nil
	}
	times, err := v.TagTimes(ctx, repo)
	if err != nil {
		return nil, err
	}
	out := make([]TagSummary, 0, len(tags))
	for _, t := range tags {
		ts, err := v.summary(repo, t)
		if err != nil {
			return nil, err
		}
		if tt, ok := times[t.Tag]; ok {
			ts.Date, ts.Commit = tt.When, tt.Commit.String()
		}
		out = append(out, ts)
	}
	slices.SortStableFunc(out, tagOrders[SortVersion])
	return out, nil
}

// summary summarizes a tag's manifest, read and parsed only when its git
// blob has not been summarized before (summaryCache).
func (v *View) summary(repo opm.Repository, t TagEntry) (TagSummary, error) {
	if ts, ok := v.r.summaries.get(t.ID); ok {
		ts.Name = t.Tag
		return ts, nil
	}
	m, err := v.read(layout.TagPath(repo, t.Tag), t.ID, opm.Reference{Repository: repo, Tag: t.Tag})
	if err != nil {
		return TagSummary{}, err
	}
	ts := Summarize(t.Tag, m)
	v.r.summaries.put(t.ID, ts)
	return ts, nil
}

// The orders of a repository's tags (opm ls --sort, the listing API's
// ?sort=).
const (
	SortVersion = "version" // opm.CompareTags: versions by version, then natural order (the default)
	SortName    = "name"    // plain string order
	SortDate    = "date"    // by the time the tag was last set, oldest first
)

// tagOrders are the comparisons of the orders.
var tagOrders = map[string]func(a, b TagSummary) int{
	SortVersion: func(a, b TagSummary) int { return opm.CompareTags(a.Name, b.Name) },
	SortName:    func(a, b TagSummary) int { return strings.Compare(a.Name, b.Name) },
	SortDate: func(a, b TagSummary) int {
		if c := a.Date.Compare(b.Date); c != 0 {
			return c
		}
		return opm.CompareTags(a.Name, b.Name)
	},
}

// SortSummaries orders one repository's tags by order (SortVersion,
// SortName or SortDate); an unknown order is an opm.ErrInvalid error.
func SortSummaries(tags []TagSummary, order string) error {
	cmp, err := tagOrder(order)
	if err == nil {
		slices.SortStableFunc(tags, cmp)
	}
	return err
}

func tagOrder(order string) (func(a, b TagSummary) int, error) {
	cmp, ok := tagOrders[order]
	if !ok {
		return nil, opm.Errorf(opm.ErrInvalid, "unknown tag order %q: want %s, %s or %s", order, SortVersion, SortName, SortDate)
	}
	return cmp, nil
}

// SortTags orders a listing's tags by order (see SortSummaries), each
// repository's among themselves: the repositories keep their order.
func (l *Listing) SortTags(order string) error {
	cmp, err := tagOrder(order)
	if err != nil {
		return err
	}
	group := map[string]int{} // a repository's place in the listing
	repoOf := func(t TagInfo) string { repo, _, _ := strings.Cut(t.Ref, ":"); return repo }
	for _, t := range l.Tags {
		if _, ok := group[repoOf(t)]; !ok {
			group[repoOf(t)] = len(group)
		}
	}
	slices.SortStableFunc(l.Tags, func(a, b TagInfo) int {
		if c := group[repoOf(a)] - group[repoOf(b)]; c != 0 {
			return c
		}
		return cmp(TagSummary{Name: a.Tag, Date: a.Date}, TagSummary{Name: b.Tag, Date: b.Date})
	})
	return nil
}

// Summarize describes a tag's manifest.
func Summarize(tag string, m *layout.StoredManifest) TagSummary {
	ts := TagSummary{Name: tag, Digest: m.Digest, MediaType: m.MediaType()}
	if m.Manifest == nil {
		return ts
	}
	ts.Size = m.Manifest.Size()
	ts.Kind = m.Manifest.Kind()
	if pm := m.Manifest.FilesView(); pm != nil {
		ts.Files = len(pm.Files())
	}
	return ts
}

// WalkNodes calls fn for every namespace, project and repository (1 to 3
// name parts) of the view, in tree order, and descends below a node only
// when fn says so. It stops at the first error, or when ctx is done.
func (v *View) WalkNodes(ctx context.Context, fn func(parts []string) (descend bool, err error)) error {
	var walk func(parts []string) error
	walk = func(parts []string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, err := v.Children(parts)
		if err != nil {
			return err
		}
		for _, n := range names {
			child := append(parts[:len(parts):len(parts)], n)
			descend, err := fn(child)
			if err == nil && descend && len(child) < 3 {
				err = walk(child)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return walk(nil)
}

// Repositories lists every repository of the view, sorted.
func (v *View) Repositories() ([]string, error) {
	var out []string
	err := v.WalkNodes(context.Background(), func(parts []string) (bool, error) {
		if len(parts) == 3 {
			out = append(out, strings.Join(parts, "/"))
		}
		return true, nil
	})
	slices.Sort(out)
	return out, err
}

// Referrers lists the manifests of a repository whose subject is d (the
// OCI referrers API), each once; artifactType, when not "", keeps those of
// that artifact type only.
func (v *View) Referrers(repo opm.Repository, d digest.Digest, artifactType string) ([]opm.Descriptor, error) {
	all, err := v.Manifests(repo)
	if err != nil {
		return nil, err
	}
	seen := map[digest.Digest]bool{}
	out := []opm.Descriptor{}
	for _, e := range all {
		if seen[e.Digest] {
			continue
		}
		seen[e.Digest] = true
		m, err := v.Read(e)
		if err != nil {
			return nil, err
		}
		if m.Manifest == nil || m.Manifest.Subject == nil || m.Manifest.Subject.Digest != d {
			continue
		}
		at := m.Manifest.ArtifactType
		if at == "" && m.Manifest.Config != nil {
			at = m.Manifest.Config.MediaType
		}
		if artifactType != "" && at != artifactType {
			continue
		}
		out = append(out, opm.Descriptor{MediaType: m.Manifest.MediaType, ArtifactType: at, Digest: e.Digest, Size: int64(len(m.Body)), Annotations: m.Manifest.Annotations})
	}
	return out, nil
}

// TagInfo is one line of `opm ls` of a repository.
type TagInfo struct {
	Ref    string        `json:"ref,omitempty"` // ns/project/repo:tag, when a selector listed tags of many repositories
	Tag    string        `json:"tag"`
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	Files  int           `json:"files"`
	Date   time.Time     `json:"date"`
	Commit string        `json:"commit"`
}

// Listing is what `opm ls` shows: child names above a repository, tags in
// one, and the tags a selector with globs or a :TAG chooses.
type Listing struct {
	Prefix string    `json:"prefix"`
	Kind   string    `json:"kind"` // namespaces, projects, repositories, tags
	Names  []string  `json:"names,omitempty"`
	Tags   []TagInfo `json:"tags,omitempty"`
}

// MarshalJSON writes the list of the listing's kind always, empty as []
// (docs/json.md): "tags" for tags, else "names".
func (l Listing) MarshalJSON() ([]byte, error) {
	type plain Listing
	if l.Kind == "tags" {
		return json.Marshal(struct {
			plain
			Tags []TagInfo `json:"tags"`
		}{plain(l), nonNilSlice(l.Tags)})
	}
	return json.Marshal(struct {
		plain
		Names []string `json:"names"`
	}{plain(l), nonNilSlice(l.Names)})
}

// nonNilSlice is s, or an empty slice for nil: a JSON list prints as [].
func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// List lists the head: the level below a node named by sel ("" is the
// namespaces), or, for a selector with globs or a tag, or with tags, every
// tag it chooses (see layout.Selector).
func (r *Registry) List(ctx context.Context, sel string, tags bool) (*Listing, error) {
	v, err := r.View()
	if err != nil {
		return nil, err
	}
	var parts []string
	if sel == "" && tags {
		sel = "*"
	}
	if sel != "" {
		s, err := layout.ParseSelector(strings.TrimSuffix(sel, "/"))
		if err != nil {
			return nil, err
		}
		p, isNode := s.Prefix()
		if !isNode || tags {
			return v.listSelected(ctx, s)
		}
		parts = p
	}
	l := &Listing{Prefix: strings.Join(parts, "/"), Kind: layout.LevelKinds[len(parts)]}
	if len(parts) < 3 {
		if l.Names, err = v.Children(parts); errors.Is(err, opm.ErrNotFound) {
			err = v.Missing(opm.Reference{}, parts)
		}
		return l, err
	}
	repo := opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}
	sums, err := v.TagSummaries(ctx, repo)
	if errors.Is(err, opm.ErrNotFound) {
		err = v.Missing(opm.Reference{}, parts)
	}
	for _, ts := range sums {
		l.Tags = append(l.Tags, tagInfo(ts))
	}
	return l, err
}

func tagInfo(ts TagSummary) TagInfo {
	return TagInfo{Tag: ts.Name, Digest: ts.Digest, Size: ts.Size, Files: ts.Files, Date: ts.Date, Commit: ts.Commit}
}

// listSelected lists every tag sel chooses, in tree order.
func (v *View) listSelected(ctx context.Context, sel layout.Selector) (*Listing, error) {
	l := &Listing{Prefix: sel.String(), Kind: "tags", Tags: []TagInfo{}}
	err := v.EachTag(ctx, sel, func(repo opm.Repository, sums []TagSummary) error {
		for _, ts := range sums {
			ti := tagInfo(ts)
			ti.Ref = opm.Reference{Repository: repo, Tag: ts.Name}.String()
			l.Tags = append(l.Tags, ti)
		}
		return nil
	})
	return l, err
}

// EachTag calls fn, for every repository with tags sel chooses, with their
// summaries, walking only the nodes sel may choose below.
func (v *View) EachTag(ctx context.Context, sel layout.Selector, fn func(opm.Repository, []TagSummary) error) error {
	return v.WalkNodes(ctx, func(parts []string) (bool, error) {
		if !sel.MayMatchBelow(parts) {
			return false, nil
		}
		if len(parts) < 3 {
			return true, nil // the tags are below a repository
		}
		repo := opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}
		sums, err := v.TagSummaries(ctx, repo)
		if err != nil {
			return false, err
		}
		var chosen []TagSummary
		for _, ts := range sums {
			if sel.Match(opm.Reference{Repository: repo, Tag: ts.Name}) {
				chosen = append(chosen, ts)
			}
		}
		if len(chosen) == 0 {
			return false, nil
		}
		return false, fn(repo, chosen)
	})
}

// neverWas is the error for a name no change of the history touched (a
// tag reference ref, or the name parts of a namespace, project or
// repository), suggesting the nearest existing name.
func (v *View) neverWas(what string, ref opm.Reference, parts []string) error {
	var have []string
	if ref.Tag != "" {
		tags, _ := v.Tags(ref.Repository)
		for _, t := range tags {
			have = append(have, opm.Reference{Repository: ref.Repository, Tag: t.Tag}.String())
		}
		if len(tags) == 0 {
			have, _ = v.Repositories()
			what = ref.Repository.String()
		}
	} else {
		names, _ := v.Children(parts[:len(parts)-1])
		for _, n := range names {
			have = append(have, strings.Join(append(slices.Clone(parts[:len(parts)-1]), n), "/"))
		}
	}
	msg := fmt.Sprintf("%s: no change of the registry's history names it", what)
	if n := nearest(what, have); n != "" {
		msg += fmt.Sprintf("; did you mean %s?", n)
	}
	return opm.Errorf(opm.ErrNotFound, "%s", msg)
}

// LogEntry is one change of `opm log`.
type LogEntry struct {
	Commit   string        `json:"commit"`
	Date     time.Time     `json:"date"`
	Author   string        `json:"author"`
	Email    string        `json:"email"`
	Action   string        `json:"action"`
	Digest   digest.Digest `json:"digest,omitempty"`
	Previous digest.Digest `json:"previous,omitempty"`
	// Signature says who signed the commit and whether the registry's
	// allowed signers at its parent allow it (docs/design.md §3, "Trust").
	Signature CommitSignature `json:"signature"`
}

// Log is the history of the head: of a tag (a reference with a tag), a
// node (ns, ns/project, ns/project/repo), or the whole registry (""),
// newest first, at most limit entries (0: all).
func (r *Registry) Log(ctx context.Context, what string, limit int) ([]LogEntry, error) {
	v, err := r.View()
	if err != nil {
		return nil, err
	}
	return v.Log(ctx, what, limit)
}

// Log is the history of the view's commit (see Registry.Log).
func (v *View) Log(ctx context.Context, what string, limit int) ([]LogEntry, error) {
	p := ""
	var ref opm.Reference
	var parts []string
	if strings.ContainsAny(what, ":@") {
		var err error
		if ref, err = opm.ParseTagReference(what); err != nil {
			return nil, err
		}
		p = layout.TagPath(ref.Repository, ref.Tag)
	} else if what != "" {
		var err error
		if parts, err = opm.ParsePrefix(what); err != nil {
			return nil, err
		}
		p = strings.Join(parts, "/")
	}
	if v.Commit().IsZero() {
		return nil, nil
	}
	entries, err := v.r.meta.Log(ctx, v.Commit(), p, limit)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 && p != "" {
		// No change ever touched it: a name that never was, likely misspelt.
		return nil, v.neverWas(what, ref, parts)
	}
	hs := make([]Hash, len(entries))
	for i, e := range entries {
		hs[i] = e.Commit
	}
	sigs, err := v.r.meta.CheckSignatures(ctx, hs, layout.AllowedSigners)
	if err != nil {
		return nil, err
	}
	out := make([]LogEntry, 0, len(entries))
	for i, e := range entries {
		f := factsOf(e.Message)
		out = append(out, LogEntry{Commit: e.Commit.String(), Date: e.When, Author: e.Author, Email: e.Email,
			Action: e.Message.Subject, Digest: f.Digest, Previous: f.Previous, Signature: sigs[i]})
	}
	return out, nil
}
