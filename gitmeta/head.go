package gitmeta

import (
	"context"
	"errors"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/openpm/opm"
)

// SetHead moves refs/heads/main from old to new (a commit already in the
// object store, e.g. fetched from a remote) with the same compare-and-set as
// Update. It fails with opm.ErrConflict if main no longer holds old.
func (r *Repo) SetHead(ctx context.Context, old, new plumbing.Hash) error {
	select {
	case r.writer <- struct{}{}:
		defer func() { <-r.writer }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if !new.IsZero() {
		r.mu.Lock()
		_, err := r.commit(new)
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	_, err := publish(ctx, r.path, Branch, old, new)
	if errors.Is(err, errRefMoved) {
		return opm.WithKind(opm.ErrConflict, err)
	}
	return err
}

// Ahead counts the commits reachable from tip that are not reachable from
// base, walking back from tip until it meets base. ok is false if base is
// not an ancestor of tip (or equal to it); the zero hash is an ancestor of
// everything. It reads every commit of tip's history when base is not in
// it.
func (r *Repo) Ahead(ctx context.Context, base, tip plumbing.Hash) (n int, ok bool, err error) {
	if base == tip || base.IsZero() && tip.IsZero() {
		return 0, true, nil
	}
	if tip.IsZero() {
		return 0, false, nil // the empty history has no ancestors
	}
	seen := map[plumbing.Hash]bool{tip: true}
	queue := []plumbing.Hash{tip}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		h := queue[0]
		queue = queue[1:]
		if h == base {
			ok = true
			continue
		}
		n++
		r.mu.Lock()
		c, err := r.commit(h)
		r.mu.Unlock()
		if err != nil {
			return 0, false, err
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	if base.IsZero() {
		ok = true
	}
	return n, ok, nil
}
