package registry

// The local cache lifecycle: a size quota on the local store, least
// recently used eviction down to a low-water mark, and pins.
//
// Configuration (git config of meta.git):
//
//	[cache]
//		quota = 20GiB          # or 500MB, 1073741824, 10% (of the filesystem holding the home)
//		pin = acme/web/site:v1.*   # one line per pinned tag pattern
//		pin = tools/*
//
// Eviction removes a blob from the local store (and its index entry) only
// when the registry has a bucket holding the same blob: a home with no
// bucket keeps its only copy locally and never evicts. Never evicted either:
// blobs of tags matching a pin pattern (as of the current head, so a new tag
// matching a pattern is pinned too), blobs whose index entry has a pin count,
// and blobs open in the mount (see BlobHolder).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	formatcfg "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
)

// Configuration keys of the cache.
const (
	QuotaKey = "cache.quota"
	PinKey   = "cache.pin"
)

// Quota defaults and the low-water mark.
const (
	// DefaultQuotaPercent of the filesystem holding the home is the quota
	// when cache.quota is unset, but never less than MinDefaultQuota.
	DefaultQuotaPercent = 10
	MinDefaultQuota     = 1 << 30
	// LowWaterPercent of the quota is what eviction brings the store down
	// to once it is over quota, so that it does not run at every fetch.
	LowWaterPercent = 90
	// AutoPruneGrace spares blobs stored or read this recently from the
	// automatic eviction (after a fetching command, in the daemon): another
	// command may be about to read a blob it has just fetched.
	AutoPruneGrace = 2 * time.Minute
)

// NoBucketReason is why a home without a bucket evicts nothing.
const NoBucketReason = "no bucket: the local store is the only copy of the blobs, so nothing is ever evicted"

// BlobHolder is something that keeps blob files of the local store open
// (the mount): eviction spares what it holds.
type BlobHolder interface {
	// InUse reports whether d is open.
	InUse(d digest.Digest) bool
	// UnlessInUse runs fn unless d is open, and keeps d from being opened
	// while fn runs. It reports whether fn ran.
	UnlessInUse(d digest.Digest, fn func()) bool
}

// lruState is the registry's cache-lifecycle state.
type lruState struct {
	holder atomic.Pointer[BlobHolder]

	mu      sync.Mutex
	tagHead plumbing.Hash // head blobTags was computed for
	tags    tagIndex      // at tagHead

	pruneMu sync.Mutex // one eviction at a time

	busyMu sync.Mutex
	busy   map[digest.Digest]int // blobs this process's commands are reading (UseBlob)
}

// UseBlob keeps d from eviction until release is called: a command that
// makes a blob local and then reads its file (pull, an upload) holds it
// across both steps.
func (r *Registry) UseBlob(d digest.Digest) (release func()) {
	r.lru.busyMu.Lock()
	if r.lru.busy == nil {
		r.lru.busy = make(map[digest.Digest]int)
	}
	r.lru.busy[d]++
	r.lru.busyMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.lru.busyMu.Lock()
			if r.lru.busy[d]--; r.lru.busy[d] <= 0 {
				delete(r.lru.busy, d)
			}
			r.lru.busyMu.Unlock()
		})
	}
}

// unlessBusy runs fn unless d is in use, by this process's commands or
// the blob holder (the mount); no use of d starts while fn runs. It reports
// whether fn ran.
func (r *Registry) unlessBusy(d digest.Digest, fn func()) bool {
	r.lru.busyMu.Lock()
	defer r.lru.busyMu.Unlock()
	if r.lru.busy[d] > 0 {
		return false
	}
	if h := r.blobHolder(); h != nil {
		return h.UnlessInUse(d, fn)
	}
	fn()
	return true
}

// inUse reports whether d is in use (see unlessBusy).
func (r *Registry) inUse(d digest.Digest) bool {
	r.lru.busyMu.Lock()
	n := r.lru.busy[d]
	r.lru.busyMu.Unlock()
	h := r.blobHolder()
	return n > 0 || h != nil && h.InUse(d)
}

// SetBlobHolder makes eviction spare the blobs h holds open (nil: none).
func (r *Registry) SetBlobHolder(h BlobHolder) {
	if h == nil {
		r.lru.holder.Store(nil)
		return
	}
	r.lru.holder.Store(&h)
}

func (r *Registry) blobHolder() BlobHolder {
	if p := r.lru.holder.Load(); p != nil {
		return *p
	}
	return nil
}

// Quota is the size limit of the local store.
type Quota struct {
	Bytes    int64  `json:"bytes"`
	LowWater int64  `json:"low_water"`
	Setting  string `json:"setting"` // cache.quota as written, or "default (10% of the filesystem, at least 1 GiB)"
	Default  bool   `json:"default"`
}

// ParseQuota parses a cache.quota value: a size with an optional unit (B,
// K/KiB, M/MiB, G/GiB, T/TiB, KB/MB/GB/TB for powers of 1000; plain bytes
// without one), or a percentage (1% to 100%) of the filesystem holding the
// home. It returns either bytes or percent.
func ParseQuota(s string) (bytes int64, percent float64, err error) {
	bad := func(why string) (int64, float64, error) {
		return 0, 0, fmt.Errorf("%s %q: %s; want a size like 20GiB, 500MB or 1073741824, or a percentage like 10%% of the filesystem holding the home: %w", QuotaKey, s, why, opm.ErrInvalid)
	}
	v := strings.TrimSpace(s)
	if v == "" {
		return bad("empty")
	}
	if num, ok := strings.CutSuffix(v, "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || math.IsNaN(p) || p <= 0 || p > 100 {
			return bad("a percentage must be above 0 and at most 100")
		}
		return 0, p, nil
	}
	i := len(v)
	for i > 0 && (v[i-1] < '0' || v[i-1] > '9') && v[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(v[:i]), strings.ToLower(strings.TrimSpace(v[i:]))
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	if mult == 0 {
		return bad("unknown unit " + strconv.Quote(v[i:]))
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || strings.ContainsAny(num, "eE+-") {
		return bad("not a number")
	}
	n := f * mult
	if n < 1 || n > math.MaxInt64/2 {
		return bad("out of range")
	}
	return int64(n), 0, nil
}

// Quota returns the local store's quota: cache.quota, else the default.
func (r *Registry) Quota() (Quota, error) {
	s, err := r.Config(QuotaKey)
	if err != nil {
		return Quota{}, err
	}
	q := Quota{Setting: s}
	if s == "" {
		fsSize, err := fsBytes(r.Dir)
		if err != nil {
			return Quota{}, err
		}
		q.Bytes = max(fsSize*DefaultQuotaPercent/100, MinDefaultQuota)
		q.Default = true
		q.Setting = fmt.Sprintf("default (%d%% of the filesystem, at least %s)", DefaultQuotaPercent, opm.HumanSize(MinDefaultQuota))
	} else {
		n, pct, err := ParseQuota(s)
		if err != nil {
			return Quota{}, err
		}
		if pct > 0 {
			fsSize, err := fsBytes(r.Dir)
			if err != nil {
				return Quota{}, err
			}
			n = int64(float64(fsSize) * pct / 100)
		}
		q.Bytes = max(n, 1)
	}
	q.LowWater = q.Bytes / 100 * LowWaterPercent
	return q, nil
}

// fsBytes is the size of the filesystem holding dir.
func fsBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("size of the filesystem of %s: %w", dir, err)
	}
	return int64(st.Blocks) * int64(st.Bsize), nil
}

// checkConfig refuses a bad value of a cache key before it is written.
func checkConfig(key, value string) error {
	if value == "" {
		return nil
	}
	switch strings.ToLower(key) { // git config keys ignore case
	case QuotaKey:
		_, _, err := ParseQuota(value)
		return err
	case PinKey:
		return ValidatePin(value)
	}
	return nil
}

// ValidatePin refuses a pin pattern that is malformed or can match no tag.
// A pattern is NS[/PROJECT[/REPO]][:TAG], each part a name or a path.Match
// glob: acme/web/site:v1.2.0, acme/web/site:v1.*, acme/web/site (every tag
// of the repository), acme/* (every project of acme), acme.
func ValidatePin(p string) error {
	bad := func(why string) error {
		return fmt.Errorf("pin pattern %q: %s; want NS[/PROJECT[/REPO]][:TAG], globs allowed (e.g. acme/web/site:v1.*, acme/*): %w", p, why, opm.ErrInvalid)
	}
	if p == "" {
		return bad("empty")
	}
	if _, err := path.Match(p, ""); err != nil {
		return bad("malformed glob")
	}
	repo, tag, hasTag := strings.Cut(p, ":")
	if strings.Contains(tag, ":") {
		return bad("more than one ':'")
	}
	parts := strings.Split(repo, "/")
	if len(parts) > 3 {
		return bad("more than three parts before the tag")
	}
	if hasTag && len(parts) != 3 {
		return bad("a :TAG needs NS/PROJECT/REPO before it")
	}
	isGlob := func(s string) bool { return strings.ContainsAny(s, `*?[\`) }
	for _, part := range parts {
		if part == "" {
			return bad("an empty part")
		}
		if !isGlob(part) && !opm.ValidComponent(part) {
			return bad(fmt.Sprintf("%q is not a valid name (lower-case letters and digits, separated by '.', '_' or '-')", part))
		}
	}
	if hasTag && (tag == "" || !isGlob(tag) && !opm.ValidTag(tag)) {
		return bad(fmt.Sprintf("%q is not a valid tag", tag))
	}
	return nil
}

// MatchPin reports whether the tag ref (ns/project/repo:tag) matches the
// pin pattern p (see ValidatePin): a pattern of fewer than three parts
// matches every tag below what it names.
func MatchPin(p, ref string) bool {
	prepo, ptag, hasTag := strings.Cut(p, ":")
	repo, tag, _ := strings.Cut(ref, ":")
	pn := strings.Count(prepo, "/") + 1
	rparts := strings.SplitN(repo, "/", 4)
	if pn > len(rparts) {
		return false
	}
	if ok, _ := path.Match(prepo, strings.Join(rparts[:pn], "/")); !ok {
		return false
	}
	if !hasTag {
		return true
	}
	ok, _ := path.Match(ptag, tag)
	return ok
}

// Pins returns the pin patterns, in config order.
func (r *Registry) Pins() ([]string, error) {
	cfg, err := r.readConfig()
	if err != nil {
		return nil, err
	}
	return cfg.Section("cache").OptionAll("pin"), nil
}

// PinResult says what Pin did.
type PinResult struct {
	Pattern      string   `json:"pattern"`
	Added        bool     `json:"added"` // false: it was pinned already
	Tags         []string `json:"tags"`  // the tags it matches now
	Blobs        int      `json:"blobs"`
	Bytes        int64    `json:"bytes"`
	Fetched      int      `json:"fetched_blobs"`
	FetchedBytes int64    `json:"fetched_bytes"`
}

// Pin records the pin pattern p (if it is not there yet) and makes local
// the blobs of the tags it matches now. Tags that match later are pinned as
// well: the pattern, not a list of blobs, is what is kept.
func (r *Registry) Pin(ctx context.Context, p string, progress Progress) (*PinResult, error) {
	if err := ValidatePin(p); err != nil {
		return nil, err
	}
	res := &PinResult{Pattern: p, Tags: []string{}}
	err := r.updateConfig(func(cfg *formatcfg.Config) error {
		s := cfg.Section("cache")
		if !slices.Contains(s.OptionAll("pin"), p) {
			s.AddOption("pin", p)
			res.Added = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tags, err := r.blobTags()
	if err != nil {
		return res, err
	}
	seenTag := map[string]bool{}
	var want []opm.Descriptor
	for d, refs := range tags.refs {
		matched := false
		for _, ref := range refs {
			if MatchPin(p, ref) {
				matched = true
				seenTag[ref] = true
			}
		}
		if !matched {
			continue
		}
		res.Blobs++
		res.Bytes += tags.size[d]
		if !r.Local.Has(d) {
			want = append(want, opm.Descriptor{Digest: d, Size: tags.size[d]})
		}
	}
	for ref := range seenTag {
		res.Tags = append(res.Tags, ref)
	}
	slices.Sort(res.Tags)
	if len(want) == 0 {
		return res, nil
	}
	if r.cache == nil {
		return res, fmt.Errorf("pinned %s, but %d of its blobs are not in the local store and this home has no bucket to fetch them from: %w", p, len(want), opm.ErrNotFound)
	}
	var total int64
	for _, b := range want {
		total += b.Size
	}
	if progress != nil {
		progress.Start(len(want), total)
		defer progress.Done()
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, b := range want {
		g.Go(func() error {
			if err := r.cache.Fetch(gctx, b.Digest); err != nil {
				return err
			}
			mu.Lock()
			res.Fetched++
			res.FetchedBytes += b.Size
			mu.Unlock()
			if progress != nil {
				progress.Add(b.Size)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, fmt.Errorf("pinned %s, but fetching its blobs failed (opm cache pin again retries): %w", p, err)
	}
	return res, nil
}

// Unpin removes the pin pattern p, exactly as it was pinned. Its blobs stay
// in the local store until eviction needs the room.
func (r *Registry) Unpin(p string) error {
	return r.updateConfig(func(cfg *formatcfg.Config) error {
		s := cfg.Section("cache")
		pins := s.OptionAll("pin")
		if !slices.Contains(pins, p) {
			if len(pins) == 0 {
				return fmt.Errorf("%q is not pinned (nothing is; opm cache pin PATTERN pins): %w", p, opm.ErrNotFound)
			}
			return fmt.Errorf("%q is not pinned (pinned: %s): %w", p, strings.Join(pins, ", "), opm.ErrNotFound)
		}
		s.Options = slices.DeleteFunc(s.Options, func(o *formatcfg.Option) bool { return o.IsKey("pin") && o.Value == p })
		return nil
	})
}

// tagIndex is which tags of the head name each blob.
type tagIndex struct {
	refs map[digest.Digest][]string
	size map[digest.Digest]int64
}

// blobTags maps every blob named by a tag of the head to those tags. It is
// kept until the head moves. A tag file that does not parse is skipped
// with a warning (opm fsck reports it).
func (r *Registry) blobTags() (tagIndex, error) {
	h, err := r.Meta.Head()
	if err != nil {
		return tagIndex{}, err
	}
	r.lru.mu.Lock()
	defer r.lru.mu.Unlock()
	if r.lru.tags.refs != nil && r.lru.tagHead == h {
		return r.lru.tags, nil
	}
	ti := tagIndex{refs: map[digest.Digest][]string{}, size: map[digest.Digest]int64{}}
	if !h.IsZero() {
		snap, err := r.Meta.Snapshot(h)
		if err != nil {
			return tagIndex{}, err
		}
		err = WalkManifests(context.Background(), snap, func(m *StoredManifest) error {
			if m.ByDigest() {
				return nil // kept by digest: no tag to match a pin
			}
			if m.Err != nil {
				slog.Warn("cache: tag skipped, its manifest does not parse", "tag", m.Ref, "err", m.Err)
				return nil
			}
			for _, b := range m.Blobs() {
				refs := ti.refs[b.Digest]
				if len(refs) > 0 && refs[len(refs)-1] == m.Ref {
					continue // two files of the package with the same content
				}
				ti.refs[b.Digest] = append(refs, m.Ref)
				ti.size[b.Digest] = b.Size
			}
			return nil
		}, nil)
		if err != nil {
			return tagIndex{}, err
		}
	}
	r.lru.tagHead, r.lru.tags = h, ti
	return ti, nil
}

// pinned returns the blobs of the tags matching a pin pattern.
func (r *Registry) pinned() (map[digest.Digest]bool, []string, error) {
	pins, err := r.Pins()
	if err != nil {
		return nil, nil, err
	}
	out := map[digest.Digest]bool{}
	if len(pins) == 0 {
		return out, pins, nil
	}
	tags, err := r.blobTags()
	if err != nil {
		return nil, nil, err
	}
	for d, refs := range tags.refs {
		for _, ref := range refs {
			if slices.ContainsFunc(pins, func(p string) bool { return MatchPin(p, ref) }) {
				out[d] = true
				break
			}
		}
	}
	return out, pins, nil
}

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
	modTime    time.Time
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
func (r *Registry) CachedBlobs() ([]CachedBlob, error) {
	var out []CachedBlob
	err := r.Local.WalkInfo(func(b cas.BlobInfo) error {
		out = append(out, CachedBlob{Digest: b.Digest, Size: b.Size, LastAccess: b.ModTime, modTime: b.ModTime, Tags: []string{}})
		return nil
	})
	if err != nil {
		return nil, err
	}
	idx, err := r.Index()
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
	pinned, _, err := r.pinned()
	if err != nil {
		return nil, err
	}
	tags, err := r.blobTags()
	if err != nil {
		return nil, err
	}
	for i := range out {
		b := &out[i]
		if e, ok := entries[b.Digest]; ok && !e.LastAccess.IsZero() {
			b.LastAccess, b.Indexed = e.LastAccess, true
			b.Pinned = e.Pins > 0
		}
		b.Pinned = b.Pinned || pinned[b.Digest]
		b.InUse = r.inUse(b.Digest)
		if refs := tags.refs[b.Digest]; refs != nil {
			b.Tags = slices.Sorted(slices.Values(refs))
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
func (r *Registry) CacheStats() (*CacheStats, error) {
	q, err := r.Quota()
	if err != nil {
		return nil, err
	}
	blobs, err := r.CachedBlobs()
	if err != nil {
		return nil, err
	}
	pins, err := r.Pins()
	if err != nil {
		return nil, err
	}
	st := &CacheStats{Home: r.Dir, Quota: q, Pins: pins, Evictable: r.Bucket != nil}
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
	if r.Bucket == nil {
		res.Reason = NoBucketReason
		if err := r.Local.Walk(func(_ digest.Digest, size int64) error {
			res.Blobs++
			res.Before += size
			return nil
		}); err != nil {
			return nil, err
		}
		res.After = res.Before
		return res, nil
	}
	blobs, err := r.CachedBlobs()
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		res.Blobs++
		res.Before += b.Size
	}
	cur := res.Before
	defer func() { res.After = cur }()
	if !o.All && cur <= q.Bytes {
		return res, nil
	}
	now := time.Now()
	var errs []error
	for i := 0; i < len(blobs) && cur > res.Target; {
		// The next candidates, enough to reach the target if all go.
		var chunk []*CachedBlob
		for need := cur - res.Target; i < len(blobs) && need > 0 && len(chunk) < 64; i++ {
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
		held, err := r.inBucket(ctx, chunk)
		if err != nil {
			return res, err
		}
		for j, b := range chunk {
			if !held[j] {
				res.KeptNotInBucket++
				continue
			}
			if o.DryRun {
				res.Evicted = append(res.Evicted, EvictedBlob{b.Digest, b.Size, b.LastAccess})
				res.Freed += b.Size
				cur -= b.Size
				continue
			}
			var derr error
			if !r.unlessBusy(b.Digest, func() { derr = r.Local.Delete(ctx, b.Digest) }) {
				res.KeptInUse++
				continue
			}
			switch {
			case derr == nil:
				res.Evicted = append(res.Evicted, EvictedBlob{b.Digest, b.Size, b.LastAccess})
				res.Freed += b.Size
				cur -= b.Size
			case errors.Is(derr, opm.ErrNotFound):
				cur -= b.Size // gone meanwhile
			default:
				errs = append(errs, derr)
			}
		}
	}
	return res, errors.Join(errs...)
}

// inBucket checks, in parallel, that the bucket holds each blob with its
// size. A blob it lacks is reported false; a failure to ask is an error.
func (r *Registry) inBucket(ctx context.Context, blobs []*CachedBlob) ([]bool, error) {
	out := make([]bool, len(blobs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, b := range blobs {
		g.Go(func() error {
			n, err := r.Bucket.Stat(gctx, b.Digest)
			switch {
			case err == nil:
				out[i] = n == b.Size
			case errors.Is(err, opm.ErrNotFound):
			default:
				return fmt.Errorf("cache: check the bucket's copy of %s before evicting it: %w", b.Digest, err)
			}
			return nil
		})
	}
	return out, g.Wait()
}

// usage sums the local store.
func (r *Registry) usage() (int64, error) {
	var total int64
	err := r.Local.Walk(func(_ digest.Digest, size int64) error {
		total += size
		return nil
	})
	return total, err
}

// AutoPrune is the eviction a fetching command runs at its end: if this
// process stored new blobs and the local store is over its quota, evict
// down to the low-water mark, sparing blobs used in the last
// AutoPruneGrace. It returns nil, nil when nothing had to be done; a result
// with a Reason when the store is over quota but nothing may be evicted.
// If the index is held by another process it gives up (a later command
// prunes).
func (r *Registry) AutoPrune(ctx context.Context) (*PruneResult, error) {
	if r.Local.Added() == 0 {
		return nil, nil
	}
	return r.pruneIfOver(ctx)
}

func (r *Registry) pruneIfOver(ctx context.Context) (*PruneResult, error) {
	q, err := r.Quota()
	if err != nil {
		return nil, err
	}
	total, err := r.usage()
	if err != nil || total <= q.Bytes {
		return nil, err
	}
	if r.Bucket == nil {
		return &PruneResult{Quota: q.Bytes, Target: q.LowWater, Before: total, After: total, Evicted: []EvictedBlob{}, Reason: NoBucketReason}, nil
	}
	if _, err := r.indexWithin(2 * time.Second); err != nil {
		return nil, err
	}
	return r.Prune(ctx, PruneOptions{Grace: AutoPruneGrace})
}

// NoteAccess records in the index that the blobs ds were just read, in one
// write (a command that read many blobs without the index open calls it at
// its end). It opens the index, waiting a moment at most: if another
// process holds it, the access is not recorded (it fails with
// opm.ErrLocked), as access times only order eviction.
func (r *Registry) NoteAccess(ds []digest.Digest) error {
	if len(ds) == 0 {
		return nil
	}
	idx, err := r.indexWithin(250 * time.Millisecond)
	if err != nil {
		return err
	}
	return idx.SetAccess(ds, r.Now())
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
			added := r.Local.Added()
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
