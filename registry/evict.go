package registry

// Eviction: over the quota, the least recently used blobs of the local
// store are removed down to its low-water mark. Removed only when the
// registry has a bucket holding the same blob: a home with no bucket keeps
// its only copy locally and never evicts. Never evicted either: blobs of
// tags a pin chooses (pins.go) and blobs in use (inuse.go).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
)

// AutoPruneGrace spares blobs stored or read this recently from the
// automatic eviction (after a fetching command, in the daemon): another
// command may be about to read a blob it has just fetched.
const AutoPruneGrace = 2 * time.Minute

// NoBucketReason is why a home without a bucket evicts nothing.
const NoBucketReason = "no bucket: the local store is the only copy of the blobs, so nothing is ever evicted"

// CachedBlob is one blob of the local store, as opm cache ls shows it.
type CachedBlob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// LastAccess is the index's last access time, or the file's
	// modification time for a blob the index does not know (Indexed false).
	LastAccess time.Time `json:"last_access"`
	Indexed    bool      `json:"indexed"`
	Pinned     bool      `json:"pinned"`
	InUse      bool      `json:"in_use"`
	Tags       []string  `json:"tags"` // tags of the head naming it
	// Partial: a blob read chunk by chunk (docs/design.md §2), of which
	// the store holds some chunks; Size is then the disk space they take,
	// and BlobSize the blob's.
	Partial  bool  `json:"partial,omitempty"`
	BlobSize int64 `json:"blob_size,omitempty"`
	modTime  time.Time
}

// fullSize is the size of the blob itself, which the bucket's copy has.
func (b *CachedBlob) fullSize() int64 {
	if b.Partial {
		return b.BlobSize
	}
	return b.Size
}

// recent is the later of the last access and the file's time.
func (b *CachedBlob) recent() time.Time {
	if b.modTime.After(b.LastAccess) {
		return b.modTime
	}
	return b.LastAccess
}

// CachedBlobs lists the local store, least recently used first, with what
// the index and the head say about each blob. It opens the index.
func (r *Registry) CachedBlobs(ctx context.Context) ([]CachedBlob, error) {
	var out []CachedBlob
	err := r.local.WalkInfo(func(b cas.BlobInfo) error {
		out = append(out, CachedBlob{Digest: b.Digest, Size: b.Size, LastAccess: b.ModTime, modTime: b.ModTime, Tags: []string{}})
		return nil
	})
	if err != nil {
		return nil, err
	}
	parts, err := r.local.Partials()
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		out = append(out, CachedBlob{Digest: p.Digest, Size: p.Bytes, BlobSize: p.Size, Partial: true, LastAccess: p.ModTime, modTime: p.ModTime, Tags: []string{}})
	}
	idx, err := r.openIndex(ctx)
	if err != nil {
		return nil, err
	}
	entries := map[digest.Digest]cas.Entry{}
	if err := idx.Each(func(d digest.Digest, e cas.Entry) error {
		entries[d] = e
		return nil
	}); err != nil {
		return nil, err
	}
	pinned, _, err := r.pinned(ctx)
	if err != nil {
		return nil, err
	}
	tags, err := r.blobTags(ctx)
	if err != nil {
		return nil, err
	}
	for i := range out {
		b := &out[i]
		if e, ok := entries[b.Digest]; ok && !e.LastAccess.IsZero() && !b.Partial {
			b.LastAccess, b.Indexed = e.LastAccess, true
		}
		b.Pinned = pinned[b.Digest]
		b.InUse = r.inuse.held(b.Digest)
		if refs := tags.refs[b.Digest]; refs != nil {
			for _, ref := range refs {
				b.Tags = append(b.Tags, ref.String())
			}
			slices.Sort(b.Tags)
		}
	}
	slices.SortStableFunc(out, func(a, b CachedBlob) int {
		if c := a.LastAccess.Compare(b.LastAccess); c != 0 {
			return c
		}
		return strings.Compare(string(a.Digest), string(b.Digest))
	})
	return out, nil
}

// CacheStats is what opm cache stats shows.
type CacheStats struct {
	Home        string   `json:"home"`
	Blobs       int      `json:"blobs"`
	Bytes       int64    `json:"bytes"`
	Quota       Quota    `json:"quota"`
	OverQuota   bool     `json:"over_quota"`
	PinnedBlobs int      `json:"pinned_blobs"`
	PinnedBytes int64    `json:"pinned_bytes"`
	InUseBlobs  int      `json:"in_use_blobs"`
	Pins        []string `json:"pins"`
	Bucket      string   `json:"bucket,omitempty"`
	// Evictable says whether eviction can happen at all; Reason says why
	// not when it cannot.
	Evictable bool   `json:"evictable"`
	Reason    string `json:"reason,omitempty"`
}

// CacheStats sums up the local store.
func (r *Registry) CacheStats(ctx context.Context) (*CacheStats, error) {
	q, err := r.Quota()
	if err != nil {
		return nil, err
	}
	blobs, err := r.CachedBlobs(ctx)
	if err != nil {
		return nil, err
	}
	pins, err := r.Pins()
	if err != nil {
		return nil, err
	}
	st := &CacheStats{Home: r.dir, Quota: q, Pins: pins, Evictable: r.bucket != nil}
	if st.Pins == nil {
		st.Pins = []string{}
	}
	if url, key, err := r.blobsURL(); err == nil && url != "" {
		st.Bucket = url + " (" + key + ")"
	}
	if !st.Evictable {
		st.Reason = NoBucketReason
	}
	for _, b := range blobs {
		st.Blobs++
		st.Bytes += b.Size
		if b.Pinned {
			st.PinnedBlobs++
			st.PinnedBytes += b.Size
		}
		if b.InUse {
			st.InUseBlobs++
		}
	}
	st.OverQuota = st.Bytes > q.Bytes
	return st, nil
}

// PruneOptions choose what Prune evicts.
type PruneOptions struct {
	// DryRun reports what would be evicted and evicts nothing.
	DryRun bool
	// All evicts every blob that may be evicted, whatever the quota.
	// Otherwise Prune does nothing under the quota, and over it evicts
	// down to the low-water mark.
	All bool
	// Grace spares blobs stored or read less than this long ago.
	Grace time.Duration
}

// EvictedBlob is a blob Prune removed (or would remove).
type EvictedBlob struct {
	Digest     digest.Digest `json:"digest"`
	Size       int64         `json:"size"`
	LastAccess time.Time     `json:"last_access"`
}

// PruneResult says what Prune did.
type PruneResult struct {
	DryRun  bool          `json:"dry_run"`
	Quota   int64         `json:"quota"`
	Target  int64         `json:"target"` // the size eviction aimed at
	Before  int64         `json:"bytes_before"`
	After   int64         `json:"bytes_after"`
	Blobs   int           `json:"blobs_before"`
	Evicted []EvictedBlob `json:"evicted"`
	Freed   int64         `json:"bytes_freed"`
	// Blobs that were candidates but were kept, by reason.
	KeptPinned      int `json:"kept_pinned"`
	KeptInUse       int `json:"kept_in_use"`
	KeptRecent      int `json:"kept_recent"`
	KeptNotInBucket int `json:"kept_not_in_bucket"`
	// Reason says why nothing could be evicted, when that is so.
	Reason string `json:"reason,omitempty"`
}

// Prune evicts least recently used blobs from the local store: over the
// quota, down to its low-water mark (or, with All, everything it may). It
// never evicts a pinned blob, a blob open in the mount, a blob the bucket
// does not hold (checked for each one), or anything at all when the home
// has no bucket.
func (r *Registry) Prune(ctx context.Context, o PruneOptions) (*PruneResult, error) {
	r.lru.pruneMu.Lock()
	defer r.lru.pruneMu.Unlock()
	q, err := r.Quota()
	if err != nil {
		return nil, err
	}
	res := &PruneResult{DryRun: o.DryRun, Quota: q.Bytes, Target: q.LowWater, Evicted: []EvictedBlob{}}
	if o.All {
		res.Target = 0
	}
	if r.bucket == nil {
		res.Reason = NoBucketReason
		if res.Blobs, res.Before, err = r.LocalUsage(); err != nil {
			return nil, err
		}
		res.After = res.Before
		return res, nil
	}
	blobs, err := r.CachedBlobs(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		res.Blobs++
		res.Before += b.Size
	}
	res.After = res.Before // what is left, as blobs go
	if !o.All && res.After <= q.Bytes {
		return res, nil
	}
	now := time.Now()
	var errs []error
	for i := 0; i < len(blobs) && res.After > res.Target; {
		var chunk []*CachedBlob
		chunk, i = pruneCandidates(blobs, i, res.After-res.Target, o, now, res)
		held, err := r.inBucket(ctx, chunk)
		if err != nil {
			return res, err
		}
		for j, b := range chunk {
			if !held[j] {
				res.KeptNotInBucket++
				continue
			}
			if err := r.evict(ctx, b, o.DryRun, res); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return res, errors.Join(errs...)
}

// pruneCandidates takes the next blobs that may be evicted, from blobs[i]
// on, enough to free need bytes if all go (64 at most), and counts in res
// those kept as pinned, in use or used within o.Grace. It returns them and
// the index to go on from.
func pruneCandidates(blobs []CachedBlob, i int, need int64, o PruneOptions, now time.Time, res *PruneResult) ([]*CachedBlob, int) {
	var chunk []*CachedBlob
	for ; i < len(blobs) && need > 0 && len(chunk) < 64; i++ {
		b := &blobs[i]
		switch {
		case b.Size == 0:
			continue // frees nothing
		case b.Pinned:
			res.KeptPinned++
			continue
		case b.InUse:
			res.KeptInUse++
			continue
		case o.Grace > 0 && now.Sub(b.recent()) < o.Grace:
			res.KeptRecent++
			continue
		}
		chunk = append(chunk, b)
		need -= b.Size
	}
	return chunk, i
}

// evict removes b, which the bucket holds, from the local store (with
// dryRun only counts it as evicted), unless it is in use by then.
func (r *Registry) evict(ctx context.Context, b *CachedBlob, dryRun bool, res *PruneResult) error {
	if dryRun {
		res.evicted(b)
		return nil
	}
	var err error
	if !r.inuse.evict(b.Digest, func() {
		if hook := r.evictHook.Load(); hook != nil {
			(*hook)(b.Digest)
		}
		if b.Partial {
			err = r.local.DeletePartial(b.Digest)
		} else {
			err = r.local.Delete(ctx, b.Digest)
		}
	}) {
		res.KeptInUse++
		return nil
	}
	switch {
	case err == nil:
		res.evicted(b)
	case errors.Is(err, opm.ErrNotFound):
		res.After -= b.Size // gone meanwhile
	default:
		return err
	}
	return nil
}

// evicted counts b as evicted.
func (res *PruneResult) evicted(b *CachedBlob) {
	res.Evicted = append(res.Evicted, EvictedBlob{b.Digest, b.Size, b.LastAccess})
	res.Freed += b.Size
	res.After -= b.Size
}

// inBucket checks, in parallel, that the bucket holds each blob with its
// size. A blob it lacks is reported false; a failure to ask is an error.
func (r *Registry) inBucket(ctx context.Context, blobs []*CachedBlob) ([]bool, error) {
	out := make([]bool, len(blobs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, b := range blobs {
		g.Go(func() error {
			n, err := r.bucket.Stat(gctx, b.Digest)
			switch {
			case err == nil:
				out[i] = n == b.fullSize()
			case errors.Is(err, opm.ErrNotFound):
			default:
				return fmt.Errorf("cache: check the bucket's copy of %s before evicting it: %w", b.Digest, err)
			}
			return nil
		})
	}
	return out, g.Wait()
}

// AutoPrune is the eviction a fetching command runs at its end: if this
// process stored new blobs and the local store is over its quota, evict
// down to the low-water mark, sparing blobs used in the last
// AutoPruneGrace. It returns nil, nil when nothing had to be done; a result
// with a Reason when the store is over quota but nothing may be evicted.
// If the index is held by another process it gives up (a later command
// prunes).
func (r *Registry) AutoPrune(ctx context.Context) (*PruneResult, error) {
	if r.local.Added() == 0 {
		return nil, nil
	}
	return r.pruneIfOver(ctx)
}

func (r *Registry) pruneIfOver(ctx context.Context) (*PruneResult, error) {
	q, err := r.Quota()
	if err != nil {
		return nil, err
	}
	_, total, err := r.LocalUsage()
	if err != nil || total <= q.Bytes {
		return nil, err
	}
	if r.bucket == nil {
		return &PruneResult{Quota: q.Bytes, Target: q.LowWater, Before: total, After: total, Evicted: []EvictedBlob{}, Reason: NoBucketReason}, nil
	}
	if _, err := r.indexWithin(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	return r.Prune(ctx, PruneOptions{Grace: AutoPruneGrace})
}

// Touch records in the index that the blobs ds were just read, in one
// write (Index.TouchAt, now): a command that read many blobs without the
// index open calls it at its end. It opens the index, waiting a moment at
// most: if another process holds it, the access is not recorded (it fails
// with opm.ErrLocked), as access times only order eviction.
func (r *Registry) Touch(ds []digest.Digest) error {
	if len(ds) == 0 {
		return nil
	}
	idx, err := r.indexWithin(context.Background(), 250*time.Millisecond)
	if err != nil {
		return err
	}
	return idx.TouchAt(ds, r.now())
}

// KeepQuota keeps the local store under its quota until the returned stop
// is called: the daemon's janitor. It looks every checkEvery (cheaply: has
// this process stored anything since?) and runs a check — sum the store,
// evict if over quota — when the store grew by a twentieth of the quota,
// when it grew at all and fullEvery has passed, and every 10 × fullEvery
// anyway. Eviction spares blobs used in the last AutoPruneGrace.
func (r *Registry) KeepQuota(ctx context.Context, checkEvery, fullEvery time.Duration, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(checkEvery)
		defer t.Stop()
		lastAdded, lastCheck := int64(-1), time.Time{}
		var lastReason string
		for {
			added := r.local.Added()
			grown := added - lastAdded
			since := time.Since(lastCheck)
			due := lastAdded < 0 || since >= 10*fullEvery || grown > 0 && since >= fullEvery
			if !due && grown > 0 {
				q, err := r.Quota()
				due = err == nil && grown >= q.Bytes/20
			}
			if due {
				lastAdded, lastCheck = added, time.Now()
				start := time.Now()
				res, err := r.pruneIfOver(ctx)
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					log.Warn("cache: quota check failed", "err", err)
				case res != nil && res.Reason != "":
					if res.Reason != lastReason {
						log.Warn("cache: over quota, nothing evicted", "bytes", res.Before, "quota", res.Quota, "why", res.Reason)
					}
				case res != nil && len(res.Evicted) == 0:
					log.Info("cache: over quota, nothing may be evicted now", "bytes", res.After, "quota", res.Quota,
						"pinned", res.KeptPinned, "in_use", res.KeptInUse, "recent", res.KeptRecent, "not_in_bucket", res.KeptNotInBucket)
				case res != nil:
					log.Info("cache: over quota, evicted", "blobs", len(res.Evicted), "freed", res.Freed,
						"bytes", res.After, "quota", res.Quota, "pinned", res.KeptPinned, "in_use", res.KeptInUse,
						"recent", res.KeptRecent, "not_in_bucket", res.KeptNotInBucket, "took", time.Since(start).Round(time.Millisecond))
				}
				lastReason = ""
				if res != nil {
					lastReason = res.Reason
				}
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}
