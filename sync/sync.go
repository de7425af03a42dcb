// Package opmsync mirrors one registry into another: `opm sync SRC DST`.
//
// A mirror copies blobs first, then metadata, so that DST never names a
// blob its bucket lacks:
//
//  1. fetch SRC's and DST's main into a scratch repository of the home
//     (registry.OpenMirror);
//  2. list the tag files that differ between DST's head and SRC's head
//     (a diff that descends only into differing subtrees; a bucket is
//     never listed) and the blobs their manifests name;
//  3. copy the blobs DST's bucket lacks (a Stat each), in parallel, each
//     verified against its digest on the way;
//  4. push: SRC's head itself (a fast-forward, commits preserved), or, for
//     a filtered mirror, one new commit on DST's head carrying
//     Opm-Synced-From: <SRC URL>@<commit>.
//
// A sync killed at any point leaves DST consistent (blobs land whole or not
// at all; the metadata moves last, by compare-and-set), and the next one
// skips the blobs that arrived. A tag whose blob fails verification at the
// source is left out: a filtered mirror publishes the other tags; a
// preserving mirror publishes nothing (its commits name the tag) and keeps
// the blobs it copied for the next run.
package opmsync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

// Progress receives counts as blobs are copied; it may be nil.
type Progress = registry.Progress

// Options tune a mirror.
type Options struct {
	// Include and Exclude are selectors (layout.Selector) of the tags to
	// mirror. Either makes the mirror filtered.
	Include, Exclude []string
	DryRun           bool
	// Force overwrites a DST whose main has commits SRC lacks.
	Force bool
	// Jobs bounds the blobs copied at once (default: the home's transfer.jobs).
	Jobs     int
	Progress Progress
	// Src and Dst, when set, wrap the remotes' buckets (tests count the
	// requests).
	Src, Dst func(Blobs) Blobs
}

// Blobs is what a mirror needs of a bucket.
type Blobs = registry.MirrorBlobs

// Filtered reports whether the options select a subset of the tags.
func (o Options) Filtered() bool { return len(o.Include) > 0 || len(o.Exclude) > 0 }

// Blob is one blob a mirror needs at DST.
type Blob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	Tags   []string      `json:"tags"`
}

// TagError is a tag left out of the mirror.
type TagError struct {
	Tag   string `json:"tag"`
	Error string `json:"error"`
	err   error
}

// Result says what a mirror did (or, with DryRun, would do).
type Result struct {
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	SrcCommit string `json:"src_commit"`
	DstBefore string `json:"dst_before"`
	DstAfter  string `json:"dst_after"`
	// Mode is "up-to-date", "fast-forward", "forced" or "filtered".
	Mode    string `json:"mode"`
	DryRun  bool   `json:"dry_run,omitempty"`
	Commits int    `json:"commits"` // commits DST lacked (preserving mirror)
	// Tags are the tags set at DST, Removed those removed from it.
	Tags    []string `json:"tags"`
	Removed []string `json:"removed,omitempty"`
	// Blobs named by the changed tags; Copied of them were copied (Bytes),
	// Present were in DST's bucket already.
	Blobs   int        `json:"blobs"`
	Copied  int        `json:"copied"`
	Present int        `json:"present"`
	Bytes   int64      `json:"bytes"`
	Missing []Blob     `json:"missing,omitempty"` // dry run: what would be copied
	Failed  []TagError `json:"failed,omitempty"`
	// Requests counts the requests sent to the two buckets (see
	// cas.Bucket.Requests) and git round trips (fetch, push).
	BucketRequests int64 `json:"bucket_requests"`
	GitRequests    int64 `json:"git_requests"`
}

// Mirror copies the remote src of reg into its remote dst.
func Mirror(ctx context.Context, reg *registry.Registry, src, dst string, opts Options) (*Result, error) {
	filter, err := layout.ParseFilter(opts.Include, opts.Exclude)
	if err != nil {
		return nil, err
	}
	if opts.Jobs <= 0 {
		opts.Jobs = reg.TransferJobs()
	}
	// 1. Metadata of both sides.
	m, err := reg.OpenMirror(ctx, src, dst, !opts.DryRun)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	res := &Result{Src: src, Dst: dst, DryRun: opts.DryRun, Tags: []string{}, GitRequests: 2}
	res.SrcCommit, res.DstBefore, res.DstAfter = m.SrcHead().String(), m.DstHead().String(), m.DstHead().String()

	// 2. What DST lacks.
	changes, err := plan(ctx, m, filter, opts, res)
	if err != nil || res.Mode == "up-to-date" {
		return res, err
	}

	// 3. Blobs.
	srcB, dstB, err := m.Buckets(ctx)
	if err != nil {
		return nil, err
	}
	before := requests(srcB, dstB)
	defer func() { res.BucketRequests += requests(srcB, dstB) - before }()
	if opts.Src != nil {
		srcB = opts.Src(srcB)
	}
	if opts.Dst != nil {
		dstB = opts.Dst(dstB)
	}
	// A DST whose metadata names nothing lacks the blobs (but leftovers
	// of an interrupted run): a small one is sent at once, without a
	// lookup. Into a DST that names blobs, each is looked up first.
	lookup := !m.DstHead().IsZero()
	bad, err := copyBlobs(ctx, srcB, dstB, changes, lookup, opts, res)
	if err != nil {
		return res, err
	}
	var ok []layout.TagChange
	for _, c := range changes {
		if e, failed := tagFailed(c, bad); failed {
			res.Failed = append(res.Failed, TagError{Tag: c.Ref.String(), Error: e.Error(), err: e})
			continue
		}
		ok = append(ok, c)
	}

	// 4. Metadata.
	switch {
	case opts.DryRun:
	case res.Mode != "filtered" && len(res.Failed) > 0:
		return res, fmt.Errorf("%w; nothing was published to %s (the copied blobs stay for the next run)", failure(res), dst)
	case res.Mode != "filtered":
		if err := m.FastForward(ctx, res.Mode == "forced"); err != nil {
			return res, err
		}
		res.GitRequests++
		res.DstAfter = res.SrcCommit
	case len(ok) > 0:
		commit, err := m.PublishFiltered(ctx, ok)
		if err != nil {
			return res, err
		}
		res.GitRequests++
		res.DstAfter = commit.String()
	}
	for _, c := range ok {
		if c.Ref.Tag == "" {
			continue // a manifest kept by digest that refers to a tag's (layout.Changes)
		}
		if c.Removed() {
			res.Removed = append(res.Removed, c.Ref.String())
		} else {
			res.Tags = append(res.Tags, c.Ref.String())
		}
	}
	return res, failure(res)
}

// failure is the error for tags left out, nil if none. Its kind is the
// worst of their causes' (a blob that fails verification at the source
// before one that is missing there).
func failure(res *Result) error {
	if len(res.Failed) == 0 {
		return nil
	}
	msgs := make([]string, len(res.Failed))
	causes := make([]error, len(res.Failed))
	for i, f := range res.Failed {
		msgs[i] = f.Tag + ": " + f.Error
		causes[i] = f.err
	}
	kind := opm.KindOf(errors.Join(causes...)).Err
	return opm.Errorf(kind, "%d tag(s) not mirrored: %s", len(res.Failed), strings.Join(msgs, "; "))
}

// plan decides the mode and lists the tag changes DST needs.
func plan(ctx context.Context, m *registry.Mirror, filter layout.Filter, opts Options, res *Result) ([]layout.TagChange, error) {
	if opts.Filtered() {
		res.Mode = "filtered"
		if synced, err := m.DstFiltered(ctx); err != nil {
			return nil, err
		} else if !synced && !opts.Force {
			return nil, opm.Errorf(opm.ErrConflict, "%s's last commit %s was not written by a filtered sync (someone pushed to the mirror?); --force syncs anyway", res.Dst, res.DstBefore[:12])
		}
	} else {
		if res.SrcCommit == res.DstBefore {
			res.Mode = "up-to-date"
			return nil, nil
		}
		n, ok, err := m.Ahead(ctx)
		if err != nil {
			return nil, err
		}
		res.Commits = n
		res.Mode = "fast-forward"
		if !ok {
			if !opts.Force {
				// A filtered mirror's commits are its own: say how to go on.
				if filtered, err := m.DstFiltered(ctx); err == nil && filtered {
					return nil, opm.Errorf(opm.ErrConflict, "%s is a filtered mirror of %s (its last commit was written by opm sync --include/--exclude): sync it again with the same --include/--exclude, or with --force to replace it with all of %s", res.Dst, res.Src, res.Src)
				}
				return nil, opm.Errorf(opm.ErrConflict, "%s has commits %s lacks (someone pushed to the mirror?); refusing to overwrite them without --force", res.Dst, res.Src)
			}
			res.Mode = "forced"
		}
	}
	var match func(opm.Reference) bool
	if opts.Filtered() {
		match = filter.Match
	}
	// namespace.json and the like are carried by the commits of a
	// preserving mirror and left out of a filtered one.
	out, err := m.Changes(match)
	if err != nil {
		return nil, err
	}
	if opts.Filtered() && len(out) == 0 {
		res.Mode = "up-to-date"
	}
	return out, nil
}

// copyBlobs copies the blobs of changes that DST lacks. It returns the
// blobs that failed verification at the source, or are missing there; any
// other failure is an error.
func copyBlobs(ctx context.Context, srcB, dstB Blobs, changes []layout.TagChange, lookup bool, opts Options, res *Result) (map[digest.Digest]error, error) {
	blobs := blobsOf(changes)
	res.Blobs = len(blobs)
	if opts.Progress != nil && !opts.DryRun {
		var total int64
		for _, bl := range blobs {
			total += bl.Size
		}
		opts.Progress.Start(len(blobs), total)
		defer opts.Progress.Done()
	}
	bc := &blobCopy{src: srcB, dst: dstB, lookup: lookup, progress: opts.Progress, bad: map[digest.Digest]error{}}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	if opts.Progress != nil && !opts.DryRun {
		gctx = registry.WithProgress(gctx, opts.Progress) // as bytes are uploaded
	}
	for _, bl := range blobs {
		g.Go(func() error {
			if opts.DryRun {
				return bc.check(gctx, bl)
			}
			return bc.copy(gctx, bl)
		})
	}
	err := g.Wait()
	bc.count(res)
	return bc.bad, err
}

// blobsOf lists the distinct blobs of changes in the order they are first
// named, each with the tags that name it.
func blobsOf(changes []layout.TagChange) []*Blob {
	byDigest := map[digest.Digest]*Blob{}
	var blobs []*Blob
	for _, c := range changes {
		for _, b := range c.Blobs {
			bl := byDigest[b.Digest]
			if bl == nil {
				bl = &Blob{Digest: b.Digest, Size: b.Size}
				byDigest[b.Digest] = bl
				blobs = append(blobs, bl)
			}
			bl.Tags = append(bl.Tags, c.Ref.String())
		}
	}
	return blobs
}

// blobCopy is what copyBlobs's parallel copies (or checks) share: the
// buckets (lookup: look each blob up at DST before sending it), and the
// counts and failures they gather.
type blobCopy struct {
	src, dst Blobs
	lookup   bool
	progress Progress

	mu      sync.Mutex
	bad     map[digest.Digest]error
	missing []Blob
	copied  atomic.Int64
	present atomic.Int64
	bytes   atomic.Int64
}

// check (a dry run) counts bl present if DST holds it whole, and lists it
// missing if not.
func (bc *blobCopy) check(ctx context.Context, bl *Blob) error {
	size, err := bc.dst.Stat(ctx, bl.Digest)
	switch {
	case err == nil && size == bl.Size:
		bc.present.Add(1)
	case err == nil || errors.Is(err, opm.ErrNotFound):
		bc.mu.Lock()
		bc.missing = append(bc.missing, *bl)
		bc.mu.Unlock()
	default:
		return fmt.Errorf("destination: %w", err)
	}
	return nil
}

// copy copies bl to DST unless it is there already; a blob that fails
// verification at the source, or is missing there, is noted in bad.
func (bc *blobCopy) copy(ctx context.Context, bl *Blob) error {
	// A blob looked up that DST has costs the lookup and no read; a
	// corrupt source blob never lands at DST.
	c, err := registry.CopyBlob(ctx, bc.src, bc.dst, opm.Descriptor{Digest: bl.Digest, Size: bl.Size}, bc.lookup)
	switch {
	case err == nil && !c.Stored:
		bc.present.Add(1)
		if bc.progress != nil {
			bc.progress.Add(bl.Size) // none moved: DST has it
		}
	case err == nil:
		bc.copied.Add(1)
		bc.bytes.Add(bl.Size)
	case c.Opened && (errors.Is(err, opm.ErrIntegrity) || errors.Is(err, opm.ErrNotFound)):
		bc.mu.Lock()
		bc.bad[bl.Digest] = fmt.Errorf("source blob %s: %w", bl.Digest, err)
		bc.mu.Unlock()
		return nil
	default:
		return fmt.Errorf("copy %s: %w", bl.Digest, err)
	}
	return nil
}

// count adds what the copies did to res: the missing blobs (sorted by
// digest), and the blobs copied or present and the bytes.
func (bc *blobCopy) count(res *Result) {
	sort.Slice(bc.missing, func(i, j int) bool { return bc.missing[i].Digest < bc.missing[j].Digest })
	res.Missing = bc.missing
	res.Copied, res.Present, res.Bytes = int(bc.copied.Load()), int(bc.present.Load()), bc.bytes.Load()
}

func tagFailed(c layout.TagChange, bad map[digest.Digest]error) (error, bool) {
	for _, b := range c.Blobs {
		if err, ok := bad[b.Digest]; ok {
			return err, true
		}
	}
	return nil, false
}

// requests sums the requests the buckets have sent, of those that count
// them (cas.Bucket).
func requests(bs ...Blobs) int64 {
	var n int64
	for _, b := range bs {
		if c, ok := b.(interface{ Requests() int64 }); ok {
			n += c.Requests()
		}
	}
	return n
}
