package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
)

// Package is a resolved reference: its manifest and where it came from.
type Package struct {
	Ref      opm.Reference
	Digest   digest.Digest
	Bytes    []byte
	Manifest *opm.Manifest
}

// Snapshot is the head of the metadata (an empty tree before any push).
func (r *Registry) Snapshot() (*gitmeta.Snapshot, error) {
	h, err := r.Meta.Head()
	if err != nil {
		return nil, err
	}
	return r.Meta.Snapshot(h)
}

// Resolve finds the package a reference names in the current head.
func (r *Registry) Resolve(ref opm.Reference) (*Package, error) {
	s, err := r.Snapshot()
	if err != nil {
		return nil, err
	}
	return ResolveIn(s, ref)
}

// ResolveIn finds the package a reference names in a snapshot. A digest
// reference resolves when the repository keeps that manifest by digest or
// one of its tags holds it.
func ResolveIn(s *gitmeta.Snapshot, ref opm.Reference) (*Package, error) {
	p := &Package{Ref: ref}
	var body []byte
	var err error
	if ref.Tag != "" {
		body, err = s.ReadFile(opm.TagPath(ref.Repository, ref.Tag))
		if errors.Is(err, opm.ErrNotFound) {
			return nil, fmt.Errorf("%s: no such tag: %w", ref, opm.ErrNotFound)
		}
	} else {
		body, err = findByDigest(s, ref)
	}
	if err != nil {
		return nil, err
	}
	p.Bytes, p.Digest = body, digest.FromBytes(body)
	if p.Manifest, err = opm.ParseManifest(body); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return p, nil
}

func findByDigest(s *gitmeta.Snapshot, ref opm.Reference) ([]byte, error) {
	b, err := s.ReadFile(opm.ManifestPath(ref.Repository, ref.Digest))
	if err == nil && digest.FromBytes(b) == ref.Digest {
		return b, nil
	}
	if err != nil && !errors.Is(err, opm.ErrNotFound) {
		return nil, err
	}
	entries, err := s.ReadDir(opm.TagsDir(ref.Repository))
	if err != nil && !errors.Is(err, opm.ErrNotFound) {
		return nil, err
	}
	for _, e := range entries {
		if e.Dir || !strings.HasSuffix(e.Name, ".json") {
			continue
		}
		b, err := s.ReadFile(opm.TagsDir(ref.Repository) + "/" + e.Name)
		if err != nil {
			return nil, err
		}
		if digest.FromBytes(b) == ref.Digest {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s: no tag of %s names this digest: %w", ref, ref.Repository, opm.ErrNotFound)
}

// TagInfo is one line of a repository listing.
type TagInfo struct {
	Tag    string        `json:"tag"`
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	Files  int           `json:"files"`
	Date   time.Time     `json:"date"`
	Commit string        `json:"commit"`
}

// Listing is what `opm ls PREFIX` shows: child names above a repository,
// tags in one.
type Listing struct {
	Prefix string    `json:"prefix"`
	Kind   string    `json:"kind"` // namespaces, projects, repositories, tags
	Names  []string  `json:"names,omitempty"`
	Tags   []TagInfo `json:"tags,omitempty"`
}

var listKinds = [4]string{"namespaces", "projects", "repositories", "tags"}

// List lists the level below prefix ("" = namespaces).
func (r *Registry) List(ctx context.Context, prefix string) (*Listing, error) {
	parts, err := opm.ParsePrefix(prefix)
	if err != nil {
		return nil, err
	}
	s, err := r.Snapshot()
	if err != nil {
		return nil, err
	}
	l := &Listing{Prefix: strings.Join(parts, "/"), Kind: listKinds[len(parts)]}
	if len(parts) == 3 {
		repo := opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}
		l.Tags, err = r.tags(ctx, s, repo)
		return l, err
	}
	entries, err := s.ReadDir(l.Prefix)
	if errors.Is(err, opm.ErrNotFound) {
		return nil, fmt.Errorf("%s: no such %s: %w", l.Prefix, strings.TrimSuffix(listKinds[len(parts)-1], "s"), opm.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Dir && opm.ValidComponent(e.Name) {
			l.Names = append(l.Names, e.Name)
		}
	}
	return l, nil
}

func (r *Registry) tags(ctx context.Context, s *gitmeta.Snapshot, repo opm.Repository) ([]TagInfo, error) {
	dir := opm.TagsDir(repo)
	entries, err := s.ReadDir(dir)
	if errors.Is(err, opm.ErrNotFound) {
		if _, err2 := s.Stat(repo.Path()); err2 != nil {
			return nil, fmt.Errorf("%s: no such repository: %w", repo, opm.ErrNotFound)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	times, err := r.TagTimes(ctx, s, repo)
	if err != nil {
		return nil, err
	}
	var out []TagInfo
	for _, e := range entries {
		tag, ok := TagOfEntry(e)
		if !ok {
			continue
		}
		b, err := s.ReadFile(dir + "/" + e.Name)
		if err != nil {
			return nil, err
		}
		ti := TagInfo{Tag: tag, Digest: digest.FromBytes(b)}
		if m, err := opm.ParseManifest(b); err == nil {
			ti.Size, ti.Files = m.Size(), len(m.Files())
		}
		if t, ok := times[tag]; ok {
			ti.Date, ti.Commit = t.When, t.Commit.String()
		}
		out = append(out, ti)
	}
	return out, nil
}

// TagOfEntry is the tag an entry of a tags directory holds: a file
// <tag>.json with a valid tag name.
func TagOfEntry(e gitmeta.Entry) (string, bool) {
	t, ok := strings.CutSuffix(e.Name, ".json")
	return t, ok && !e.Dir && opm.ValidTag(t)
}

// TagTime is when, and by which commit, a tag was last set.
type TagTime struct {
	When   time.Time
	Commit plumbing.Hash
}

// TagTimes finds, for every tag of a repository in s, the commit that last
// set it: one walk down the history of the repository's tags directory,
// stopping as soon as every current tag is accounted for.
func (r *Registry) TagTimes(ctx context.Context, s *gitmeta.Snapshot, repo opm.Repository) (map[string]TagTime, error) {
	dir := opm.TagsDir(repo)
	entries, err := s.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	want := make(map[string]plumbing.Hash, len(entries)) // name -> blob hash at s
	for _, e := range entries {
		if !e.Dir {
			want[e.Name] = e.Hash
		}
	}
	out := make(map[string]TagTime, len(want))
	// The history is read a page at a time, so that the walk stops as soon
	// as every current tag is accounted for.
	const page = 64
	for from := s.Commit(); len(want) > 0 && from != plumbing.ZeroHash; {
		log, err := r.Meta.Log(ctx, from, dir, page)
		if err != nil {
			return nil, err
		}
		if len(log) == 0 {
			break
		}
		for _, c := range log {
			if len(want) == 0 {
				break
			}
			before, err := r.entries(c.Parent, dir)
			if err != nil {
				return nil, err
			}
			// The tags still wanted whose blob differs in the commit
			// before c (or is missing there) were set by c.
			for name, h := range want {
				if before[name] != h {
					out[strings.TrimSuffix(name, ".json")] = TagTime{When: c.When, Commit: c.Commit}
					delete(want, name)
				}
			}
		}
		from = log[len(log)-1].Parent
	}
	return out, nil
}

// entries maps the names in dir at commit to their hashes; empty for the
// zero commit or a missing dir.
func (r *Registry) entries(commit plumbing.Hash, dir string) (map[string]plumbing.Hash, error) {
	if commit == plumbing.ZeroHash {
		return nil, nil
	}
	s, err := r.Meta.Snapshot(commit)
	if err != nil {
		return nil, err
	}
	list, err := s.ReadDir(dir)
	if err != nil && !errors.Is(err, opm.ErrNotFound) {
		return nil, err
	}
	m := make(map[string]plumbing.Hash, len(list))
	for _, e := range list {
		m[e.Name] = e.Hash
	}
	return m, nil
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
}

// Log is the history of a tag (a reference with a tag), a prefix, or the
// whole registry (""), newest first.
func (r *Registry) Log(ctx context.Context, what string, limit int) ([]LogEntry, error) {
	p := ""
	if strings.ContainsAny(what, ":@") {
		ref, err := opm.ParseTagReference(what)
		if err != nil {
			return nil, err
		}
		p = opm.TagPath(ref.Repository, ref.Tag)
	} else if what != "" {
		parts, err := opm.ParsePrefix(what)
		if err != nil {
			return nil, err
		}
		p = strings.Join(parts, "/")
	}
	entries, err := r.Meta.Log(ctx, plumbing.ZeroHash, p, limit)
	if err != nil {
		return nil, err
	}
	out := make([]LogEntry, 0, len(entries))
	for _, e := range entries {
		le := LogEntry{Commit: e.Commit.String(), Date: e.When, Author: e.Author, Email: e.Email, Action: e.Message.Subject}
		for _, t := range e.Message.Trailers {
			switch t.Key {
			case "Opm-Digest":
				le.Digest = digest.Digest(t.Value)
			case "Opm-Previous":
				le.Previous = digest.Digest(t.Value)
			}
		}
		out = append(out, le)
	}
	return out, nil
}
