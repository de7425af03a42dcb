package registry

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
)

// The history of tags: when each tag of a repository was last set, read
// from the commits a page at a time.

// tagTimes are one repository's TagTimes, found once per view.
type tagTimes struct {
	once sync.Once
	m    map[string]TagTime
	err  error
}

// TagTime is when, and by which commit, a tag was last set.
type TagTime struct {
	When   time.Time
	Commit Hash
}

// TagTimes finds, for every tag of a repository in the view, the commit
// that last set it: one walk down the history of the repository's tags
// directory, stopping as soon as every current tag is accounted for. It is
// computed once per view and repository.
func (v *View) TagTimes(ctx context.Context, repo opm.Repository) (map[string]TagTime, error) {
	v.timesMu.Lock()
	tt := v.times[repo.Path()]
	if tt == nil {
		tt = &tagTimes{}
		v.times[repo.Path()] = tt
	}
	v.timesMu.Unlock()
	tt.once.Do(func() { tt.m, tt.err = v.tagTimes(context.WithoutCancel(ctx), repo) })
	return tt.m, tt.err
}

func (v *View) tagTimes(ctx context.Context, repo opm.Repository) (map[string]TagTime, error) {
	dir := layout.TagsDir(repo)
	entries, err := v.snap.ReadDir(dir)
	if errors.Is(err, opm.ErrNotFound) {
		return map[string]TagTime{}, nil
	}
	if err != nil {
		return nil, err
	}
	want := make(map[string]Hash, len(entries)) // file name -> blob hash at the view
	for _, e := range entries {
		if _, ok := layout.TagOfFile(e.Name); ok && !e.Dir {
			want[e.Name] = e.Hash
		}
	}
	out := make(map[string]TagTime, len(want))
	// The history is read a page at a time, so that the walk stops as soon
	// as every current tag is accounted for.
	const page = 64
	meta := v.r.meta
	for from := v.snap.Commit(); len(want) > 0 && !from.IsZero(); {
		log, err := meta.Log(ctx, from, dir, page)
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
			before, err := v.r.entries(c.Parent, dir)
			if err != nil {
				return nil, err
			}
			// The tags still wanted whose blob differs in the commit
			// before c (or is missing there) were set by c.
			for name, h := range want {
				if before[name] != h {
					tag, _ := layout.TagOfFile(name)
					out[tag] = TagTime{When: c.When, Commit: c.Commit}
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
func (r *Registry) entries(commit Hash, dir string) (map[string]Hash, error) {
	if commit.IsZero() {
		return nil, nil
	}
	s, err := r.meta.Snapshot(commit)
	if err != nil {
		return nil, err
	}
	list, err := s.ReadDir(dir)
	if err != nil && !errors.Is(err, opm.ErrNotFound) {
		return nil, err
	}
	m := make(map[string]Hash, len(list))
	for _, e := range list {
		m[e.Name] = e.Hash
	}
	return m, nil
}
