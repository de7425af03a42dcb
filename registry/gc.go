package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// Defaults of opm gc.
const (
	DefaultGCGrace = time.Hour
	DefaultGCKeep  = 7 * 24 * time.Hour
)

// GCOptions say what GC collects.
type GCOptions struct {
	// Remote collects that remote's bucket instead of this home's store.
	Remote string
	DryRun bool
	// Grace: a blob written less than this long ago is never removed (a
	// push may be about to name it).
	Grace time.Duration
	// Keep: blobs named by a manifest that a commit of this period replaced
	// or removed are kept (so recent history still pulls).
	Keep     time.Duration
	Progress Progress
}

// GCBlob is a blob GC removed (or would remove, with DryRun).
type GCBlob struct {
	Digest  digest.Digest `json:"digest"`
	Size    int64         `json:"size"`
	Written time.Time     `json:"written"`
}

// GCResult says what GC did.
type GCResult struct {
	Store      string   `json:"store"`   // "bucket <url>" or "local store"
	Heads      []string `json:"heads"`   // the metadata heads whose blobs are live
	Live       int      `json:"live"`    // distinct blobs named (head and kept history)
	Scanned    int      `json:"scanned"` // blobs in the store
	Young      int      `json:"young"`   // unnamed, but inside the grace period
	Removed    []GCBlob `json:"removed"`
	BytesFreed int64    `json:"bytes_freed"`
	DryRun     bool     `json:"dry_run,omitempty"`
}

// GC removes from the registry's store (its bucket, or the local store of a
// home without one) the blobs that no manifest names — neither at the head
// of any metadata using that store nor in a version replaced or removed by
// a commit of the last Keep — and that were written more than Grace ago.
//
// Every metadata this home knows that uses the store is consulted: this
// home's main when the store is its own, and the main of every remote whose
// bucket it is (fetched now; a remote that cannot be fetched stops GC). A
// manifest that does not parse stops GC too: what it names is unknown.
// After listing the store, the heads are read again and the blobs of
// anything committed meanwhile are spared.
func (r *Registry) GC(ctx context.Context, opts GCOptions) (*GCResult, error) {
	if opts.Grace < 0 || opts.Keep < 0 {
		return nil, opm.Errorf(opm.ErrInvalid, "gc: --grace and --keep cannot be negative")
	}
	res := &GCResult{Removed: []GCBlob{}, DryRun: opts.DryRun}
	st, err := r.openGCStore(ctx, opts.Remote)
	if err != nil {
		return nil, err
	}
	defer st.close()
	res.Store = st.describe(r)

	heads, err := r.storeHeads(ctx, st.url, st.own)
	if err != nil {
		return nil, err
	}
	live, err := r.liveAtHeads(ctx, heads, opts.Keep, res)
	if err != nil {
		return nil, err
	}
	young := r.now().Add(-opts.Grace)
	garbage, err := r.unnamedBlobs(ctx, st.bucket, live, young, res)
	if err != nil {
		return nil, err
	}

	// Writers in progress finish first (a push may have found a candidate
	// stored and be about to name it); new ones wait until gc is done. A
	// dry run removes nothing and keeps no writer waiting.
	if !opts.DryRun {
		release, err := holdForGC(ctx, r.dir)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	if garbage, err = r.spareCommitted(ctx, st, heads, live, garbage); err != nil {
		return nil, err
	}
	res.Live = len(live)
	if err := r.removeGarbage(ctx, st, garbage, young, opts, res); err != nil {
		return res, err
	}
	return res, nil
}

// gcStore is the store GC collects: a bucket (nil for the local store of a
// home without one), its url, and whether it is this home's own.
type gcStore struct {
	bucket *cas.Bucket
	url    string
	own    bool
	opened bool // the bucket was opened for this GC; close closes it
}

// openGCStore returns the store GC collects: this home's, or with remote
// that remote's bucket (opened unless it is this home's own).
func (r *Registry) openGCStore(ctx context.Context, remote string) (*gcStore, error) {
	url, _, err := r.blobsURL()
	if err != nil {
		return nil, err
	}
	st := &gcStore{bucket: r.bucket, url: url, own: true}
	if remote == "" {
		return st, nil
	}
	rm, err := r.Remote(remote)
	if err != nil {
		return nil, err
	}
	if rm.Blobs != url || r.bucket == nil {
		bucket, err := cas.OpenBucket(ctx, rm.Blobs)
		if err != nil {
			return nil, fmt.Errorf("remote %s: %w", rm.Name, err)
		}
		st = &gcStore{bucket: bucket, url: rm.Blobs, own: false, opened: true}
	}
	return st, nil
}

// close closes the bucket if openGCStore opened it.
func (st *gcStore) close() {
	if st.opened {
		st.bucket.Close()
	}
}

// describe names the store for GCResult.Store.
func (st *gcStore) describe(r *Registry) string {
	if st.bucket != nil {
		return "bucket " + st.url
	}
	return "local store " + r.Paths().Blobs()
}

// liveAtHeads returns the blobs named at each head (and the two empty ones)
// and, with keep, by the versions its commits of the last keep replaced or
// removed; it records the heads in res.
func (r *Registry) liveAtHeads(ctx context.Context, heads []namedHead, keep time.Duration, res *GCResult) (map[digest.Digest]bool, error) {
	// The two tiny blobs every push stores locally (the empty config and
	// the empty file) are always kept.
	live := map[digest.Digest]bool{opm.EmptyDigest: true, opm.EmptyFileDigest: true}
	cutoff := r.now().Add(-keep)
	for _, h := range heads {
		res.Heads = append(res.Heads, h.name+"@"+h.commit.String())
		if err := r.liveAt(ctx, h.commit, live); err != nil {
			return nil, err
		}
		if keep > 0 {
			if err := r.liveInHistory(ctx, h.commit, cutoff, live); err != nil {
				return nil, err
			}
		}
	}
	return live, nil
}

// unnamedBlobs lists the blobs of the store that live does not name and
// that were written before young, counting in res those scanned and those
// spared as young.
func (r *Registry) unnamedBlobs(ctx context.Context, bucket *cas.Bucket, live map[digest.Digest]bool, young time.Time, res *GCResult) ([]GCBlob, error) {
	var garbage []GCBlob
	consider := func(b cas.BlobInfo) error {
		res.Scanned++
		switch {
		case live[b.Digest]:
		case b.ModTime.After(young):
			res.Young++
		default:
			garbage = append(garbage, GCBlob{Digest: b.Digest, Size: b.Size, Written: b.ModTime})
		}
		return ctx.Err()
	}
	var err error
	if bucket != nil {
		err = bucket.List(ctx, consider)
	} else {
		err = r.local.WalkInfo(consider) // the walk's own stat gives the time
	}
	if err != nil {
		return nil, err
	}
	return garbage, nil
}

// spareCommitted reads the heads again, marks live what was committed
// since heads were read, and returns garbage without it.
func (r *Registry) spareCommitted(ctx context.Context, st *gcStore, heads []namedHead, live map[digest.Digest]bool, garbage []GCBlob) ([]GCBlob, error) {
	again, err := r.storeHeads(ctx, st.url, st.own)
	if err != nil {
		return nil, err
	}
	for _, h := range again {
		if err := r.liveSince(ctx, heads, h, live); err != nil {
			return nil, err
		}
	}
	return slices.DeleteFunc(garbage, func(b GCBlob) bool { return live[b.Digest] }), nil
}

// removeGarbage removes each blob of garbage (with DryRun, only counts it),
// recording in res what went and what was kept as young after all.
func (r *Registry) removeGarbage(ctx context.Context, st *gcStore, garbage []GCBlob, young time.Time, opts GCOptions, res *GCResult) error {
	var total int64
	for _, b := range garbage {
		total += b.Size
	}
	if opts.Progress != nil && !opts.DryRun {
		opts.Progress.Start(len(garbage), total)
		defer opts.Progress.Done()
	}
	for _, b := range garbage {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !opts.DryRun {
			removed, err := r.collect(ctx, st.bucket, st.own, b, young)
			if err != nil {
				return err
			}
			if !removed {
				res.Young++
				continue
			}
			if opts.Progress != nil {
				opts.Progress.Add(b.Size)
			}
		}
		res.Removed = append(res.Removed, b)
		res.BytesFreed += b.Size
	}
	return nil
}

// collect removes one unnamed blob from the store (and, for this home's own
// bucket, its local copy). A local-only blob rewritten or reused since it
// was listed (its time moved past young) is kept.
func (r *Registry) collect(ctx context.Context, bucket *cas.Bucket, own bool, b GCBlob, young time.Time) (bool, error) {
	if bucket == nil {
		info, err := r.local.Info(b.Digest)
		if errors.Is(err, opm.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if info.ModTime.After(young) {
			return false, nil
		}
	} else if err := bucket.Delete(ctx, b.Digest); err != nil && !errors.Is(err, opm.ErrNotFound) {
		return false, err
	}
	if bucket == nil || own {
		if err := r.local.Delete(ctx, b.Digest); err != nil && !errors.Is(err, opm.ErrNotFound) {
			return false, err
		}
	}
	return true, nil
}

// namedHead is a metadata head that uses the store being collected.
type namedHead struct {
	name   string // "main" or a remote's name
	commit Hash
}

// storeHeads returns the heads of every metadata this home knows that keeps
// its blobs in the store at url ("" is the local store of a home without a
// bucket): this home's main if the store is its own, and the freshly fetched
// main of every remote whose bucket it is.
func (r *Registry) storeHeads(ctx context.Context, url string, own bool) ([]namedHead, error) {
	var out []namedHead
	if own {
		h, err := r.meta.Head()
		if err != nil {
			return nil, err
		}
		out = append(out, namedHead{name: "main", commit: h})
	}
	if url == "" {
		return out, nil
	}
	remotes, err := r.Remotes()
	if err != nil {
		return nil, err
	}
	for _, rm := range remotes {
		if rm.Blobs != url || rm.URL == "" {
			continue
		}
		h, err := r.meta.Fetch(ctx, rm.URL, gitmeta.TrackingRef(rm.Name))
		if err != nil {
			return nil, fmt.Errorf("gc: remote %s uses this bucket but its metadata cannot be read, so what it names is unknown: %w", rm.Name, err)
		}
		out = append(out, namedHead{name: rm.Name, commit: h})
	}
	return out, nil
}

// liveAt marks the blobs of every manifest at commit.
func (r *Registry) liveAt(ctx context.Context, commit Hash, live map[digest.Digest]bool) error {
	s, err := r.meta.Snapshot(commit)
	if err != nil {
		return err
	}
	return layout.Walk(ctx, gitTree{s}, func(m *layout.StoredManifest) error {
		return markLive(m.Ref.String(), m.Manifest, m.Err, live)
	}, nil)
}

// liveInHistory marks the blobs of the manifest versions that commits newer
// than cutoff replaced or removed: each was live at some moment of the kept
// period. The walk goes back along first parents until the first older
// commit.
func (r *Registry) liveInHistory(ctx context.Context, head Hash, cutoff time.Time, live map[digest.Digest]bool) error {
	from := head
	for !from.IsZero() {
		page, err := r.meta.Log(ctx, from, "", 256)
		if err != nil {
			return err
		}
		for _, e := range page {
			if e.When.Before(cutoff) {
				return nil
			}
			if err := r.markChanged(ctx, e.Parent, e.Commit, true, live); err != nil {
				return err
			}
		}
		if len(page) == 0 {
			return nil
		}
		from = page[len(page)-1].Parent
	}
	return nil
}

// liveSince marks the blobs of the manifests set between the head of the
// same name in before and now.
func (r *Registry) liveSince(ctx context.Context, before []namedHead, now namedHead, live map[digest.Digest]bool) error {
	var old Hash
	for _, h := range before {
		if h.name == now.name {
			old = h.commit
		}
	}
	if old == now.commit {
		return nil
	}
	return r.markChanged(ctx, old, now.commit, false, live)
}

// markChanged marks the blobs of the manifest files that differ from commit
// a to commit b: their versions at a (replaced or removed by b) when
// previous, else their versions at b.
func (r *Registry) markChanged(ctx context.Context, a, b Hash, previous bool, live map[digest.Digest]bool) error {
	diff, err := r.meta.Diff(a, b)
	if err != nil {
		return err
	}
	at, h := b, func(d gitmeta.DiffEntry) Hash { return d.New }
	if previous {
		at, h = a, func(d gitmeta.DiffEntry) Hash { return d.Old }
	}
	s, err := r.meta.Snapshot(at)
	if err != nil {
		return err
	}
	for _, d := range diff {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p, _ := layout.Parse(d.Path); h(d).IsZero() || !p.IsManifest() {
			continue
		}
		body, err := s.ReadFile(d.Path)
		if err != nil {
			return err
		}
		m, perr := opm.ParseAnyManifest(body, "")
		if err := markLive(d.Path+" at "+at.String()[:12], m, perr, live); err != nil {
			return err
		}
	}
	return nil
}

// markLive marks the blobs a manifest names (namedBlobs); a manifest that
// does not parse stops GC.
func markLive(what string, m *opm.AnyManifest, perr error, live map[digest.Digest]bool) error {
	blobs, err := namedBlobs(what, m, perr)
	if err != nil {
		return fmt.Errorf("gc: %w; nothing was removed (see opm fsck)", err)
	}
	for _, b := range blobs {
		live[b.Digest] = true
	}
	return nil
}

// errUnknownBlobs: a stored manifest does not parse, so what it names is
// unknown.
var errUnknownBlobs = errors.New("the blobs it names are unknown")

// namedBlobs is the one rule of what a stored manifest (file what, parsed
// as m or failing with perr) keeps from removal, for gc and a blob delete
// alike: the blobs it names. A manifest that does not parse may name any
// blob, and when in doubt a blob is kept: it is an errUnknownBlobs error,
// and neither removes anything while it stands.
func namedBlobs(what string, m *opm.AnyManifest, perr error) ([]opm.Descriptor, error) {
	if perr != nil {
		return nil, fmt.Errorf("%s does not parse, so %w: %w", what, errUnknownBlobs, perr)
	}
	return m.Blobs(), nil
}
