package registry

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/openpm/opm/cas/castest"
)

// recorder is a Progress that records what it was told.
type recorder struct {
	mu    sync.Mutex
	total int64
	adds  int
	sum   int64
}

func (p *recorder) Start(files int, bytes int64) { p.mu.Lock(); p.total = bytes; p.mu.Unlock() }
func (p *recorder) Add(n int64)                  { p.mu.Lock(); p.adds++; p.sum += n; p.mu.Unlock() }
func (p *recorder) Done()                        {}

// TestProgressMovesWithinABlob: the progress of push, pull (from the bucket
// and from the local store), prefetch and fsck --read-data moves as the bytes of one big
// file do, not once per file, and adds up to its size. (It moved once per
// file: a 2 GiB push was silent for seconds.)
func TestProgressMovesWithinABlob(t *testing.T) {
	ctx := context.Background()
	const size = 24 << 20
	r, _ := cacheHome(t, "file://"+filepath.Join(t.TempDir(), "bucket")+"?create_dir=1", 0, 0)
	b, d := castest.Blob(9, size)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "big"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(what string, p *recorder) {
		t.Helper()
		if p.adds < 3 || p.sum != size {
			t.Errorf("%s: %d adds summing to %d bytes; want several, summing to %d", what, p.adds, p.sum, size)
		}
	}
	var push recorder
	if _, err := r.Push(ctx, mustRef(t, "ns/p/r:v1"), []string{src}, PushOptions{Progress: &push}); err != nil {
		t.Fatal(err)
	}
	check("push", &push)

	var local recorder
	if _, err := r.Pull(ctx, mustRef(t, "ns/p/r:v1"), filepath.Join(t.TempDir(), "a"), false, &local); err != nil {
		t.Fatal(err)
	}
	check("pull of a local blob", &local)

	if err := r.local.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	var remote recorder
	if _, err := r.Pull(ctx, mustRef(t, "ns/p/r:v1"), filepath.Join(t.TempDir(), "b"), false, &remote); err != nil {
		t.Fatal(err)
	}
	check("pull from the bucket", &remote)

	if err := r.local.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	var fetch recorder
	if _, err := r.Pin(ctx, "ns/p/r:v1", &fetch); err != nil {
		t.Fatal(err)
	}
	if fetch.adds < 3 || fetch.sum < size {
		t.Errorf("prefetch: %d adds summing to %d bytes; want several, at least %d", fetch.adds, fetch.sum, size)
	}

	var verify recorder
	if _, err := r.Fsck(ctx, FsckOptions{ReadData: true, Progress: &verify}); err != nil {
		t.Fatal(err)
	}
	if verify.adds < 3 || verify.sum != verify.total || verify.sum < size {
		t.Errorf("fsck --read-data: %d adds summing to %d of %d bytes; want several, summing to the total", verify.adds, verify.sum, verify.total)
	}
}
