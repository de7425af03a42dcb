// Package opmsync mirrors one registry into another: `opm sync SRC DST`.
//
// A mirror copies blobs first, then metadata, so that DST never names a
// blob its bucket lacks:
//
//  1. fetch SRC's and DST's main into a scratch repository of the home,
//     <home>/mirrors/<DST>.git (SRC's as refs/remotes/<SRC>/main, DST's as
//     its main);
//  2. list the tag files that differ between DST's head and SRC's head
//     (gitmeta Diff, which descends only into differing subtrees; a bucket is
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
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/registry"
)

// Progress receives counts as blobs are copied; it may be nil.
type Progress = registry.Progress

// Options tune a mirror.
type Options struct {
	// Include and Exclude are path.Match patterns over ns/project/repo:tag
	// (see registry.MatchTag). Either makes the mirror filtered.
	Include, Exclude []string
	DryRun           bool
	// Force overwrites a DST whose main has commits SRC lacks.
	Force bool
	// Author writes a filtered mirror's commits (default "opm sync";
	// registry.Registry.Author is the home's).
	Author gitmeta.Signature
	// Jobs bounds the blobs copied at once (default 32).
	Jobs     int
	Progress Progress
	// Src and Dst, when set, are used instead of opening the remotes'
	// buckets (tests wrap them to count requests).
	Src, Dst Blobs
}

// Blobs is what a mirror needs of a bucket.
type Blobs interface {
	cas.Fetcher
	cas.Stater
	cas.Pusher
}

// Filtered reports whether the options select a subset of the tags.
func (o Options) Filtered() bool { return len(o.Include) > 0 || len(o.Exclude) > 0 }

func (o Options) selects(ref string) bool {
	if len(o.Include) > 0 && !slices.ContainsFunc(o.Include, func(p string) bool { return registry.MatchTag(p, ref) }) {
		return false
	}
	return !slices.ContainsFunc(o.Exclude, func(p string) bool { return registry.MatchTag(p, ref) })
}

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
	// Requests counts bucket operations (Stat, Open, Put count 1 each)
	// and git round trips (fetch, push).
	BucketRequests int64 `json:"bucket_requests"`
	GitRequests    int64 `json:"git_requests"`
}

// Mirror copies the remote src into the remote dst.
func Mirror(ctx context.Context, home string, src, dst registry.Remote, opts Options) (*Result, error) {
	for _, rm := range []registry.Remote{src, dst} {
		if err := registry.ValidateRemoteName(rm.Name); err != nil {
			return nil, fmt.Errorf("sync: %w", err)
		}
	}
	if src.Name == dst.Name {
		return nil, fmt.Errorf("sync %s %s: source and destination are the same remote: %w", src.Name, dst.Name, opm.ErrInvalid)
	}
	for _, p := range append(slices.Clone(opts.Include), opts.Exclude...) {
		if err := registry.ValidatePattern(p); err != nil {
			return nil, err
		}
	}
	if opts.Jobs <= 0 {
		opts.Jobs = 32
	}
	if opts.Author.Name == "" {
		opts.Author = gitmeta.Signature{Name: "opm sync", Email: "opm@localhost"}
	}
	if !opts.DryRun {
		// An opm gc of DST's bucket from this home waits for the copy and
		// the publish (blobs found already there are about to be named).
		release, err := registry.HoldForWrite(ctx, home)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	res := &Result{Src: src.Name, Dst: dst.Name, DryRun: opts.DryRun, Tags: []string{}}
	scratch := registry.MirrorScratch(home, dst.Name)
	if err := os.MkdirAll(filepath.Dir(scratch), 0o755); err != nil {
		return nil, err
	}
	repo, err := gitmeta.Init(scratch)
	if err != nil {
		return nil, err
	}
	defer repo.Close()

	// 1. Metadata of both sides.
	s, err := registry.FetchMain(ctx, scratch, src.URL, registry.TrackingRef(src.Name))
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src.Name, err)
	}
	d, err := registry.FetchMain(ctx, scratch, dst.URL, registry.TrackingRef(dst.Name))
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", dst.Name, err)
	}
	res.GitRequests += 2
	res.SrcCommit, res.DstBefore, res.DstAfter = s.String(), d.String(), d.String()
	cur, err := repo.Head()
	if err != nil {
		return nil, err
	}
	if cur != d {
		if err := repo.SetHead(ctx, cur, d); err != nil {
			return nil, err
		}
	}

	// 2. What DST lacks.
	changes, err := plan(ctx, repo, src, s, d, opts, res)
	if err != nil || res.Mode == "up-to-date" {
		return res, err
	}

	// 3. Blobs.
	srcB, dstB := opts.Src, opts.Dst
	if srcB == nil {
		b, err := cas.OpenBucket(ctx, src.Blobs)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src.Name, err)
		}
		defer b.Close()
		srcB = b
	}
	if dstB == nil {
		b, err := cas.OpenBucket(ctx, dst.Blobs)
		if err != nil {
			return nil, fmt.Errorf("destination %s: %w", dst.Name, err)
		}
		defer b.Close()
		dstB = b
	}
	bad, err := copyBlobs(ctx, srcB, dstB, changes, opts, res)
	if err != nil {
		return res, err
	}
	var ok []registry.TagChange
	for _, c := range changes {
		if e, failed := tagFailed(c, bad); failed {
			res.Failed = append(res.Failed, TagError{Tag: c.Ref, Error: e.Error()})
			continue
		}
		ok = append(ok, c)
	}

	// 4. Metadata.
	switch {
	case opts.DryRun:
	case res.Mode != "filtered" && len(res.Failed) > 0:
		return res, fmt.Errorf("%w; nothing was published to %s (the copied blobs stay for the next run)", failure(res), dst.Name)
	case res.Mode != "filtered":
		if err := registry.PushMain(ctx, scratch, dst.URL, d, s, res.Mode == "forced"); err != nil {
			return res, mirrorPushError(dst, err)
		}
		res.GitRequests++
		res.DstAfter = s.String()
	case len(ok) > 0:
		commit, err := commitFiltered(ctx, repo, src, s, ok, opts.Author)
		if err != nil {
			return res, err
		}
		if err := registry.PushMain(ctx, scratch, dst.URL, d, commit, false); err != nil {
			return res, mirrorPushError(dst, err)
		}
		res.GitRequests++
		res.DstAfter = commit.String()
	}
	for _, c := range ok {
		if c.Body == nil {
			res.Removed = append(res.Removed, c.Ref)
		} else {
			res.Tags = append(res.Tags, c.Ref)
		}
	}
	return res, failure(res)
}

func mirrorPushError(dst registry.Remote, err error) error {
	if errors.Is(err, registry.ErrRemoteMoved) {
		return fmt.Errorf("%s changed while this sync ran; run it again (the copied blobs stay): %w", dst.Name, err)
	}
	return err
}

// failure is the error for tags left out, nil if none.
func failure(res *Result) error {
	if len(res.Failed) == 0 {
		return nil
	}
	msgs := make([]string, len(res.Failed))
	for i, f := range res.Failed {
		msgs[i] = f.Tag + ": " + f.Error
	}
	return fmt.Errorf("%d tag(s) not mirrored: %s: %w", len(res.Failed), strings.Join(msgs, "; "), opm.ErrIntegrity)
}

// plan decides the mode and lists the tag changes DST needs.
func plan(ctx context.Context, repo *gitmeta.Repo, src registry.Remote, s, d plumbing.Hash, opts Options, res *Result) ([]registry.TagChange, error) {
	if opts.Filtered() {
		res.Mode = "filtered"
		if !d.IsZero() {
			log, err := repo.Log(ctx, d, "", 1)
			if err != nil {
				return nil, err
			}
			if len(log) == 1 {
				if _, synced := log[0].Message.Trailer("Opm-Synced-From"); !synced && !opts.Force {
					return nil, fmt.Errorf("%s's last commit %s was not written by a filtered sync (someone pushed to the mirror?); --force syncs anyway: %w", res.Dst, d.String()[:12], opm.ErrConflict)
				}
			}
		}
	} else {
		if s == d {
			res.Mode = "up-to-date"
			return nil, nil
		}
		n, ok, err := repo.Ahead(ctx, d, s)
		if err != nil {
			return nil, err
		}
		res.Commits = n
		res.Mode = "fast-forward"
		if !ok {
			if !opts.Force {
				return nil, fmt.Errorf("%s has commits %s lacks (someone pushed to the mirror?); refusing to overwrite them without --force: %w", res.Dst, res.Src, opm.ErrConflict)
			}
			res.Mode = "forced"
		}
	}
	var match func(string) bool
	if opts.Filtered() {
		match = opts.selects
	}
	// namespace.json and the like are carried by the commits of a
	// preserving mirror and left out of a filtered one.
	out, err := registry.ChangedTags(repo, d, s, match)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src.Name, err)
	}
	if opts.Filtered() && len(out) == 0 {
		res.Mode = "up-to-date"
	}
	return out, nil
}

// copyBlobs copies the blobs of changes that DST lacks. It returns the
// blobs that failed verification at the source; any other failure is an
// error.
func copyBlobs(ctx context.Context, srcB, dstB Blobs, changes []registry.TagChange, opts Options, res *Result) (map[digest.Digest]error, error) {
	byDigest := map[digest.Digest]*Blob{}
	var order []digest.Digest
	for _, c := range changes {
		for _, b := range c.Blobs {
			bl := byDigest[b.Digest]
			if bl == nil {
				bl = &Blob{Digest: b.Digest, Size: b.Size}
				byDigest[b.Digest] = bl
				order = append(order, b.Digest)
			}
			bl.Tags = append(bl.Tags, c.Ref)
		}
	}
	res.Blobs = len(order)
	var total int64
	for _, d := range order {
		total += byDigest[d].Size
	}
	if opts.Progress != nil && !opts.DryRun {
		opts.Progress.Start(len(order), total)
		defer opts.Progress.Done()
	}
	var (
		mu      sync.Mutex
		bad     = map[digest.Digest]error{}
		missing []Blob
		reqs    atomic.Int64
		copied  atomic.Int64
		present atomic.Int64
		bytes   atomic.Int64
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	for _, d := range order {
		bl := byDigest[d]
		g.Go(func() error {
			if opts.DryRun {
				reqs.Add(1)
				size, err := dstB.Stat(gctx, bl.Digest)
				switch {
				case err == nil && size == bl.Size:
					present.Add(1)
				case err == nil || errors.Is(err, opm.ErrNotFound):
					mu.Lock()
					missing = append(missing, *bl)
					mu.Unlock()
				default:
					return fmt.Errorf("destination: %w", err)
				}
				return nil
			}
			// A blob from an earlier run costs one existence check (Put's) and
			// no read. The source's reader verifies the bytes and dstB.Put
			// verifies them again before they become visible, so a corrupt
			// source blob never lands at DST.
			opened, err := registry.PutFrom(gctx, dstB, bl.Digest, bl.Size, func() (io.ReadCloser, error) {
				return srcB.Open(gctx, bl.Digest)
			})
			reqs.Add(1) // the destination's existence check
			if opened {
				reqs.Add(2) // read at the source, write at the destination
			}
			switch {
			case err == nil && !opened:
				present.Add(1)
			case err == nil:
				copied.Add(1)
				bytes.Add(bl.Size)
			case opened && (errors.Is(err, opm.ErrIntegrity) || errors.Is(err, opm.ErrNotFound)):
				mu.Lock()
				bad[bl.Digest] = fmt.Errorf("source blob %s: %w", bl.Digest, err)
				mu.Unlock()
				return nil
			default:
				return fmt.Errorf("copy %s: %w", bl.Digest, err)
			}
			if opts.Progress != nil {
				opts.Progress.Add(bl.Size)
			}
			return nil
		})
	}
	err := g.Wait()
	sort.Slice(missing, func(i, j int) bool { return missing[i].Digest < missing[j].Digest })
	res.Missing = missing
	res.BucketRequests += reqs.Load()
	res.Copied, res.Present, res.Bytes = int(copied.Load()), int(present.Load()), bytes.Load()
	return bad, err
}

func tagFailed(c registry.TagChange, bad map[digest.Digest]error) (error, bool) {
	for _, b := range c.Blobs {
		if err, ok := bad[b.Digest]; ok {
			return err, true
		}
	}
	return nil, false
}

// commitFiltered writes one commit on DST's head (the scratch repository's
// main) setting the selected tags as they are at SRC.
func commitFiltered(ctx context.Context, repo *gitmeta.Repo, src registry.Remote, s plumbing.Hash, changes []registry.TagChange, author gitmeta.Signature) (plumbing.Hash, error) {
	cs := make([]gitmeta.Change, len(changes))
	for i, c := range changes {
		cs[i] = gitmeta.Change{Path: c.Path, Data: c.Body, Delete: c.Body == nil}
	}
	msg := gitmeta.Message{
		Subject:  fmt.Sprintf("sync %d tag(s) from %s", len(changes), src.Name),
		Trailers: []gitmeta.Trailer{{Key: "Opm-Synced-From", Value: src.URL + "@" + s.String()}},
	}
	commit, _, err := repo.Update(ctx, author, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return cs, msg, nil
	})
	return commit, err
}
