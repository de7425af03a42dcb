package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/opmtest"
)

// cacheHome opens a home with a file:// bucket (or none, if url is "")
// and pushes n packages ns/p/r:vI, each one file of size bytes (seed I).
// It returns the home and the content digest of each package.
func cacheHome(t *testing.T, url string, n, size int) (*Registry, []digest.Digest) {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	r := openHome(t, home)
	if url != "" {
		if err := r.SetConfig(context.Background(), "opm.blobs", url); err != nil {
			t.Fatal(err)
		}
		r.Close()
		r = openHome(t, home)
	}
	var ds []digest.Digest
	for i := range n {
		b, d := castest.Blob(uint64(i+1), size)
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "f"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Push(context.Background(), mustRef(t, fmt.Sprintf("ns/p/r:v%d", i)), []string{src}, PushOptions{}); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return r, ds
}

func storeBytes(t *testing.T, r *Registry) int64 {
	t.Helper()
	_, n, err := r.LocalUsage()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func evictedDigests(res *PruneResult) []digest.Digest {
	var out []digest.Digest
	for _, e := range res.Evicted {
		out = append(out, e.Digest)
	}
	return out
}

// TestPruneLRU: over quota, eviction takes the least recently used blobs
// (by the index's access times, not push order) down to the low-water
// mark, skipping pinned and open blobs; evicted blobs leave the store and
// the index, and are fetched again from the bucket when read.
func TestPruneLRU(t *testing.T) {
	ctx := context.Background()
	const size = 10000
	r, ds := cacheHome(t, "file://"+t.TempDir(), 5, size)
	idx, err := r.openIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Least recently used first: 0, 1, 3, 4, 2.
	for i, ago := range []int{5, 4, 1, 3, 2} {
		if err := idx.TouchAt([]digest.Digest{ds[i]}, now.Add(-time.Duration(ago)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Pin(ctx, "ns/p/r:v0", nil); err != nil {
		t.Fatal(err)
	}
	release := r.inuse.hold(ds[1]) // as a pull between its fetch and its copy

	total := storeBytes(t, r)
	quota := total - size - size/2 // must free 1.5 blobs + 10%: two blobs
	if err := r.SetConfig(context.Background(), QuotaKey, strconv.FormatInt(quota, 10)); err != nil {
		t.Fatal(err)
	}
	dry, err := r.Prune(ctx, PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := storeBytes(t, r); got != total {
		t.Fatalf("dry run changed the store: %d bytes, was %d", got, total)
	}
	res, err := r.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{ds[3], ds[4]}
	if got := evictedDigests(res); !slices.Equal(got, want) {
		t.Fatalf("evicted %v, want %v (LRU order, sparing pinned %s and open %s)", got, want, ds[0], ds[1])
	}
	if got := evictedDigests(dry); !slices.Equal(got, want) {
		t.Fatalf("dry run would evict %v, want %v", got, want)
	}
	if res.KeptPinned != 1 || res.KeptInUse != 1 {
		t.Fatalf("kept pinned %d, in use %d; want 1 and 1", res.KeptPinned, res.KeptInUse)
	}
	after := storeBytes(t, r)
	q, _ := r.Quota()
	if after != res.After || after > q.LowWater || res.Freed != total-after {
		t.Fatalf("after prune: %d bytes (result says %d, freed %d of %d), low-water mark %d", after, res.After, res.Freed, total, q.LowWater)
	}
	for i, d := range ds {
		evicted := slices.Contains(want, d)
		if r.local.Has(d) == evicted {
			t.Fatalf("blob %d (%s): local %v, evicted %v", i, d, r.local.Has(d), evicted)
		}
		if _, err := idx.Get(d); evicted != errors.Is(err, opm.ErrNotFound) {
			t.Fatalf("blob %d: index entry after prune: %v", i, err)
		}
	}

	// Under quota now: nothing more goes.
	res, err = r.Prune(ctx, PruneOptions{})
	if err != nil || len(res.Evicted) != 0 {
		t.Fatalf("second prune under quota: %v, %v", evictedDigests(res), err)
	}

	// Everything that may go: the open blob and the pin stay.
	_, err = r.Prune(ctx, PruneOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.local.Has(ds[0]) || !r.local.Has(ds[1]) || r.local.Has(ds[2]) {
		t.Fatalf("prune --all: pinned %v, open %v, other %v (want true true false)", r.local.Has(ds[0]), r.local.Has(ds[1]), r.local.Has(ds[2]))
	}
	release()
	if err := r.Unpin("ns/p/r:v0"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx, PruneOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		if r.local.Has(d) {
			t.Fatalf("blob %d still local after unpin, close and prune --all", i)
		}
	}

	// Every package reads back, fetched again from the bucket.
	for i := range ds {
		out := t.TempDir()
		if _, err := r.Pull(ctx, mustRef(t, fmt.Sprintf("ns/p/r:v%d", i)), out, false, nil); err != nil {
			t.Fatal(err)
		}
		b, _ := castest.Blob(uint64(i+1), size)
		if got, err := os.ReadFile(filepath.Join(out, "f")); err != nil || string(got) != string(b) {
			t.Fatalf("package %d after eviction: %d bytes, %v", i, len(got), err)
		}
		if !r.local.Has(ds[i]) {
			t.Fatalf("blob %d not local again after the pull", i)
		}
	}
}

// TestPruneNoIndexEntry: a blob the index does not know is ordered by its
// file's modification time.
func TestPruneNoIndexEntry(t *testing.T) {
	ctx := context.Background()
	r, ds := cacheHome(t, "file://"+t.TempDir(), 3, 5000)
	idx, err := r.openIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, d := range ds {
		if err := idx.TouchAt([]digest.Digest{d}, now.Add(-time.Duration(10-i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	// Blob 2, the most recent by the index, loses its entry and gets an old file time.
	if err := idx.Delete(ds[2]); err != nil {
		t.Fatal(err)
	}
	old := now.Add(-time.Hour)
	if err := os.Chtimes(r.local.Path(ds[2]), old, old); err != nil {
		t.Fatal(err)
	}
	total := storeBytes(t, r)
	if err := r.SetConfig(context.Background(), QuotaKey, strconv.FormatInt(total-1000, 10)); err != nil {
		t.Fatal(err)
	}
	res, err := r.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := evictedDigests(res); !slices.Equal(got, []digest.Digest{ds[2]}) {
		t.Fatalf("evicted %v, want only the blob with the oldest file time %s", got, ds[2])
	}
}

// TestPruneNoBucket: a home without a bucket keeps its only copy: nothing
// is evicted whatever the quota, and the result says why.
func TestPruneNoBucket(t *testing.T) {
	ctx := context.Background()
	r, ds := cacheHome(t, "", 3, 4000)
	if err := r.SetConfig(context.Background(), QuotaKey, "1"); err != nil {
		t.Fatal(err)
	}
	before := storeBytes(t, r)
	for _, o := range []PruneOptions{{}, {All: true}} {
		res, err := r.Prune(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Evicted) != 0 || res.Reason != NoBucketReason {
			t.Fatalf("no-bucket prune %+v: evicted %v, reason %q", o, evictedDigests(res), res.Reason)
		}
	}
	if got := storeBytes(t, r); got != before {
		t.Fatalf("store went from %d to %d bytes", before, got)
	}
	for _, d := range ds {
		if !r.local.Has(d) {
			t.Fatalf("%s evicted from a home without a bucket", d)
		}
	}
	if res, err := r.pruneIfOver(ctx); err != nil || res == nil || res.Reason != NoBucketReason {
		t.Fatalf("automatic prune over quota without a bucket: %+v, %v", res, err)
	}
	st, err := r.CacheStats(context.Background())
	if err != nil || st.Evictable || !st.OverQuota {
		t.Fatalf("stats: %+v, %v", st, err)
	}
}

// TestPrunePinPattern: a pattern pins tags pushed after it too, and pin
// fetches the blobs of the tags it matches into a home that lacks them.
func TestPrunePinPattern(t *testing.T) {
	ctx := context.Background()
	url := castest.StartS3(t)
	r, ds := cacheHome(t, url, 2, 3000)
	if _, err := r.Pin(ctx, "ns/p/r:v1*", nil); err != nil {
		t.Fatal(err)
	}
	// v10 arrives after the pin; v0 matches no pattern.
	b, d10 := castest.Blob(99, 3000)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), b, 0o644)
	if _, err := r.Push(ctx, mustRef(t, "ns/p/r:v10"), []string{src}, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx, PruneOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	if r.local.Has(ds[0]) || !r.local.Has(ds[1]) || !r.local.Has(d10) {
		t.Fatalf("after prune --all with pin ns/p/r:v1*: v0 %v, v1 %v, v10 %v (want false true true)", r.local.Has(ds[0]), r.local.Has(ds[1]), r.local.Has(d10))
	}

	// A second home with the metadata and bucket, but no blobs.
	homeB := filepath.Join(t.TempDir(), "b")
	copyMeta(t, r.dir, homeB)
	rb := openHome(t, homeB)
	if rb.local.Has(ds[1]) {
		t.Fatal("second home already has the blob")
	}
	if err := rb.Unpin("ns/p/r:v1*"); err != nil { // copied with the config
		t.Fatal(err)
	}
	res, err := rb.Pin(ctx, "ns/p/r:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Added || !slices.Equal(res.Tags, []string{"ns/p/r:v1"}) || res.Fetched == 0 || !rb.local.Has(ds[1]) || rb.local.Has(d10) {
		t.Fatalf("pin in the second home: %+v; v1 local %v, v10 local %v", res, rb.local.Has(ds[1]), rb.local.Has(d10))
	}
	again, err := rb.Pin(ctx, "ns/p/r:v1", nil)
	if err != nil || again.Added {
		t.Fatalf("pinning twice: %+v, %v", again, err)
	}
	pins, _ := rb.Pins()
	if !slices.Equal(pins, []string{"ns/p/r:v1"}) {
		t.Fatalf("pins %v", pins)
	}
	if err := rb.Unpin("ns/p/r:v9"); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("unpin of a pattern never pinned: %v", err)
	}
}

func TestParseQuota(t *testing.T) {
	for _, tc := range []struct {
		in    string
		bytes int64
		pct   float64
	}{
		{"1073741824", 1 << 30, 0},
		{"20GiB", 20 << 30, 0},
		{"20g", 20 << 30, 0},
		{"500MB", 500e6, 0},
		{"1.5 GiB", 3 << 29, 0},
		{"512K", 512 << 10, 0},
		{"10%", 0, 10},
		{"0.5%", 0, 0.5},
	} {
		b, p, err := ParseQuota(tc.in)
		if err != nil || b != tc.bytes || p != tc.pct {
			t.Errorf("ParseQuota(%q) = %d, %v, %v; want %d, %v", tc.in, b, p, err, tc.bytes, tc.pct)
		}
	}
	for _, bad := range []string{"", "0", "-5", "20XB", "GiB", "1e9", "0%", "101%", "ten", "5%%", "NaN%"} {
		if _, _, err := ParseQuota(bad); !errors.Is(err, opm.ErrInvalid) {
			t.Errorf("ParseQuota(%q): %v, want an invalid-input error", bad, err)
		}
	}
	r := openHome(t, t.TempDir())
	if err := r.SetConfig(context.Background(), QuotaKey, "lots"); !errors.Is(err, opm.ErrInvalid) {
		t.Fatalf("SetConfig of a bad quota: %v", err)
	}
	if v, _ := r.Config(QuotaKey); v != "" {
		t.Fatalf("a refused quota was written: %q", v)
	}
	q, err := r.Quota()
	if err != nil || !q.Default || q.Bytes < MinDefaultQuota || q.LowWater >= q.Bytes {
		t.Fatalf("default quota %+v, %v", q, err)
	}
	if err := r.SetConfig(context.Background(), QuotaKey, "50%"); err != nil {
		t.Fatal(err)
	}
	fsSize, _ := fsBytes(r.dir)
	if q, err := r.Quota(); err != nil || q.Bytes != fsSize/2 {
		t.Fatalf("50%% quota: %+v, %v; filesystem %d", q, err, fsSize)
	}
}

// age makes every blob of the store look used long ago, in the index and
// by its file time, so that the grace period of automatic eviction does
// not spare it.
func age(t *testing.T, r *Registry, except ...digest.Digest) {
	t.Helper()
	idx, err := r.openIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	var ds []digest.Digest
	r.local.Walk(func(d digest.Digest, _ int64) error {
		if !slices.Contains(except, d) {
			ds = append(ds, d)
			if err := os.Chtimes(r.local.Path(d), old, old); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	})
	if err := idx.TouchAt(ds, old); err != nil {
		t.Fatal(err)
	}
}

// TestAutoPrune: the eviction that ends a fetching command takes old
// blobs over the quota and spares those just used.
func TestAutoPrune(t *testing.T) {
	ctx := context.Background()
	r, ds := cacheHome(t, "file://"+t.TempDir(), 4, 8000)
	age(t, r, ds[3]) // v3 was just used
	// Under the quota only with v3 gone too.
	if err := r.SetConfig(context.Background(), QuotaKey, "5000"); err != nil {
		t.Fatal(err)
	}
	res, err := r.AutoPrune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res == nil || res.KeptRecent != 1 || !r.local.Has(ds[3]) {
		t.Fatalf("auto prune: %+v; recent blob local %v", res, r.local.Has(ds[3]))
	}
	for i := range 3 {
		if r.local.Has(ds[i]) {
			t.Fatalf("old blob %d survived an automatic prune over quota", i)
		}
	}
	// Under quota: nothing to do.
	if err := r.SetConfig(context.Background(), QuotaKey, "9000"); err != nil {
		t.Fatal(err)
	}
	if res, err := r.AutoPrune(ctx); err != nil || res != nil {
		t.Fatalf("auto prune under quota: %+v, %v", res, err)
	}
}

// TestKeepQuota: the daemon's janitor brings a store over quota down to the
// low-water mark by itself.
func TestKeepQuota(t *testing.T) {
	r, ds := cacheHome(t, "file://"+t.TempDir(), 4, 8000)
	age(t, r)
	if err := r.SetConfig(context.Background(), QuotaKey, "20000"); err != nil {
		t.Fatal(err)
	}
	stop := r.KeepQuota(context.Background(), 10*time.Millisecond, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	defer stop()
	q, _ := r.Quota()
	opmtest.Eventually(t, "the janitor to bring the store down to the low-water mark", func() error {
		if n := storeBytes(t, r); n > q.LowWater {
			return fmt.Errorf("store %d bytes, over the low-water mark %d", n, q.LowWater)
		}
		return nil
	})
	stop()
	left := 0
	for _, d := range ds {
		if r.local.Has(d) {
			left++
		}
	}
	if left != 2 {
		t.Fatalf("%d of 4 blobs left under a quota of 2.5 blobs (low-water 2.25), want 2", left)
	}
}
