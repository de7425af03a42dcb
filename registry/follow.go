package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// followOrigin fetches origin's main and fast-forwards local main to it.
// Local commits origin lacks are kept (they are published by the next
// push, tag or rm); a local main that diverged from origin's is an opm.ErrConflict
// error unless force, which takes origin's. It returns origin's head.
func (r *Registry) followOrigin(ctx context.Context, o Remote, force bool) (Hash, error) {
	h, _, err := r.followOriginTrust(ctx, o, force)
	return h, err
}

// followOriginTrust is followOrigin, also saying what verifying origin's
// signatures found (nil when it was not asked: origin had no main).
func (r *Registry) followOriginTrust(ctx context.Context, o Remote, force bool) (Hash, *Trust, error) {
	check, checkedFrom, trust := r.originCheck(ctx, o)
	remote, err := r.followFetched(ctx, o, force, check, checkedFrom)
	return remote, *trust, err
}

func (r *Registry) followFetched(ctx context.Context, o Remote, force bool, check func(Hash) error, checkedFrom *Hash) (Hash, error) {
	remote, err := r.meta.FetchChecked(ctx, o.URL, gitmeta.TrackingRef(o.Name), check)
	if err != nil {
		return remote, err
	}
	for {
		local, err := r.meta.Head()
		if err != nil {
			return remote, err
		}
		if local == remote {
			return remote, nil
		}
		if _, ok, err := r.meta.Ahead(ctx, remote, local); err != nil {
			return remote, err
		} else if ok {
			return remote, nil // local is ahead
		}
		if _, ok, err := r.meta.Ahead(ctx, local, remote); err != nil {
			return remote, err
		} else if !ok && !force {
			return remote, opm.Errorf(opm.ErrConflict, "this home's main and %s's have diverged (local commits %s lacks); opm sync --force takes %s's and drops them", o.Name, o.Name, o.Name)
		}
		// The fetch checked origin's main against the head of then; a
		// local writer has moved main since: check again.
		if local != *checkedFrom {
			if err := check(remote); err != nil {
				return remote, err
			}
		}
		err = r.meta.SetHead(ctx, local, remote)
		if err == nil || !errors.Is(err, opm.ErrConflict) {
			return remote, err
		}
		// A local writer moved main meanwhile: look again.
	}
}

// originCheck is the check of a fetch of origin's main (see
// gitmeta.FetchChecked): its history must verify (verifyRemote), and
// nothing a push would refuse is taken (a hostile or broken writer at
// origin), so every file that differs from local main is checked
// (layout.Changes: manifests, description files, and no file the layout
// has no place for); only a head that passes both is recorded as verified.
// It records the local head it checked from, and what the first
// verification found.
func (r *Registry) originCheck(ctx context.Context, o Remote) (check func(Hash) error, from *Hash, trust **Trust) {
	from, trust = new(Hash), new(*Trust)
	return func(remote Hash) error {
		t, record, err := r.verifyHead(ctx, r.meta, o, remote)
		if err != nil {
			return err
		}
		local, err := r.meta.Head()
		if err != nil {
			return err
		}
		if _, err := tagChanges(r.meta, local, remote, nil); err != nil {
			return fmt.Errorf("%s's main (%s) was not taken: %w", o.Name, remote.String()[:12], err)
		}
		// Verified and taken: only now does it count as verified.
		if err := record(); err != nil {
			return err
		}
		if *trust == nil {
			*trust = t
		}
		*from = local
		return nil
	}, from, trust
}

// SyncResult says what SyncOrigin did.
type SyncResult struct {
	Remote     string `json:"remote"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Commits    int    `json:"commits"` // fetched commits now on local main
	Ahead      int    `json:"ahead"`   // local commits origin lacks
	Prefetched int    `json:"prefetched_blobs,omitempty"`
	Bytes      int64  `json:"prefetched_bytes,omitempty"`
	// Tags are the tags whose blobs --prefetch made local.
	Tags []string `json:"prefetched_tags,omitempty"`
	// Trust says what verifying origin's signatures found; nil for an
	// unsigned origin.
	Trust *Trust `json:"trust,omitempty"`
	// FreshUntil is until when origin's timestamp says its metadata is
	// current (none without one); past it, the sync fails as stale.
	FreshUntil *time.Time `json:"fresh_until,omitempty"`
}

// SyncOrigin brings local main up to origin's (see followOrigin). With
// prefetch, the blobs of the tags filter chooses are then downloaded into
// the local store; otherwise they are fetched on first use.
func (r *Registry) SyncOrigin(ctx context.Context, force, prefetch bool, filter layout.Filter, progress Progress) (*SyncResult, error) {
	o, ok, err := r.origin()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, opm.Errorf(opm.ErrNotFound, "this home has no origin: opm remote add origin --meta URL --blobs URL")
	}
	before, err := r.meta.Head()
	if err != nil {
		return nil, err
	}
	remote, trust, err := r.followOriginTrust(ctx, o, force)
	stale := r.checkFresh(r.meta, o)
	if err != nil {
		return nil, errStaleToo(err, stale)
	}
	after, err := r.meta.Head()
	if err != nil {
		return nil, err
	}
	res := &SyncResult{Remote: o.Name, Before: before.String(), After: after.String()}
	if trust != nil && trust.Signed {
		res.Trust = trust
	}
	res.FreshUntil = r.trustState(o.Name).FreshUntil
	if n, ok, err := r.meta.Ahead(ctx, before, after); err == nil && ok {
		res.Commits = n
	}
	if n, ok, err := r.meta.Ahead(ctx, remote, after); err == nil && ok {
		res.Ahead = n
	}
	if prefetch {
		err = r.prefetch(ctx, after, filter, progress, res)
	}
	// A stale origin: the sync is done, and fails so that monitoring
	// notices.
	return res, errStaleToo(err, stale)
}

// prefetch makes local the blobs of the tags of commit that filter chooses.
func (r *Registry) prefetch(ctx context.Context, commit Hash, filter layout.Filter, progress Progress, res *SyncResult) error {
	// Every tag file is a change from the empty tree.
	changes, err := tagChanges(r.meta, gitmeta.ZeroHash, commit, filter.Match)
	if err != nil {
		return err
	}
	res.Tags = []string{}
	for _, c := range changes {
		if c.Ref.Tag != "" { // not a manifest that refers to one (layout.Changes)
			res.Tags = append(res.Tags, c.Ref.String())
		}
	}
	if r.cache == nil {
		return nil // everything is local already
	}
	var want []opm.Descriptor
	var total int64
	blobs := layout.Blobs(changes)
	for _, b := range blobs {
		if !r.local.Has(b.Digest) {
			want = append(want, b)
			total += b.Size
		}
	}
	res.Prefetched, res.Bytes = len(want), total
	return r.fetchAll(ctx, want, opm.ChunkListsOf(blobs), progress, nil)
}

// fetchAll makes the blobs local, transfer.jobs GETs at a time, calling
// done (if set) after each. A blob with a chunk list in lists is fetched by
// ranges, in parallel (Blob.Stored): it takes all the jobs while it does.
func (r *Registry) fetchAll(ctx context.Context, want []opm.Descriptor, lists map[digest.Digest]opm.Descriptor, progress Progress, done func(opm.Descriptor)) error {
	var total int64
	for _, b := range want {
		total += b.Size
	}
	if progress != nil {
		progress.Start(len(want), total)
		defer progress.Done()
	}
	jobs := int64(r.TransferJobs())
	slots := semaphore.NewWeighted(jobs)
	g, gctx := errgroup.WithContext(ctx)
	counting := WithProgress(gctx, progress) // as bytes arrive
	for _, b := range want {
		list, chunked := lists[b.Digest]
		n := int64(1)
		if chunked {
			n = jobs
		}
		if err := slots.Acquire(gctx, n); err != nil {
			break // the group's error, or ctx's
		}
		g.Go(func() error {
			defer slots.Release(n)
			if progress != nil && r.HasLocal(b.Digest) {
				progress.Add(b.Size) // nothing to download
			}
			var err error
			if chunked {
				var blob *Blob
				if blob, err = r.openStored(counting, &opm.File{Digest: b.Digest, Size: b.Size, Chunks: &list}); err == nil {
					blob.Close()
				}
			} else {
				err = r.cache.Fetch(counting, b.Digest)
			}
			if err != nil {
				return err
			}
			if done != nil {
				done(b)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}
