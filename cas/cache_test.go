package cas_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
)

// counting wraps a real store, counts Opens, and makes each Open slow so
// that concurrent callers overlap.
type counting struct {
	cas.Store
	opens atomic.Int32
}

func (c *counting) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	c.opens.Add(1)
	time.Sleep(100 * time.Millisecond)
	return c.Store.Open(ctx, d)
}

// failingPut wraps a real store whose uploads fail.
type failingPut struct{ cas.Store }

var errUpload = errors.New("upload refused")

func (failingPut) Put(context.Context, digest.Digest, int64, io.Reader) error { return errUpload }

// newCache returns a cache over a counting file:// bucket and the bucket's
// directory.
func newCache(t *testing.T) (*cas.Cache, *counting, string) {
	dir := t.TempDir()
	remote := &counting{Store: openBucket(t, "file://"+dir)}
	c := cas.NewCache(openLocal(t, nil), remote)
	t.Cleanup(func() { c.Close() })
	return c, remote, dir
}

// readConcurrently reads d from n goroutines at once.
func readConcurrently(st cas.Fetcher, d digest.Digest, n int) ([][]byte, []error) {
	got := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = castest.ReadAll(st, d) })
	}
	wg.Wait()
	return got, errs
}

func TestCacheFetchesOnce(t *testing.T) {
	c, remote, _ := newCache(t)
	b, d := castest.Blob(1, 2<<20)
	castest.MustPut(t, remote.Store, d, b)

	got, errs := readConcurrently(c, d, 16)
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		if string(got[i]) != string(b) {
			t.Fatalf("reader %d: wrong content", i)
		}
	}
	if n := remote.opens.Load(); n != 1 {
		t.Fatalf("remote opened %d times, want 1", n)
	}
	if !c.Local().Has(d) {
		t.Fatal("blob not stored locally")
	}
	castest.MustRead(t, c, d, b)
	if n := remote.opens.Load(); n != 1 {
		t.Fatalf("remote opened %d times after a local hit, want 1", n)
	}
}

func TestCacheRefusesCorruptRemote(t *testing.T) {
	c, remote, dir := newCache(t)
	b, d := castest.Blob(1, 300_000)
	castest.MustPut(t, remote.Store, d, b)
	remoteFile := filepath.Join(dir, "blobs", "sha256", d.Encoded())
	corruptFile(t, remoteFile)

	_, errs := readConcurrently(c, d, 4)
	for i, err := range errs {
		if !errors.Is(err, opm.ErrIntegrity) {
			t.Fatalf("reader %d: got %v, want an integrity error", i, err)
		}
	}
	if n := remote.opens.Load(); n != 1 {
		t.Fatalf("remote opened %d times by concurrent readers of a bad blob, want 1", n)
	}
	if c.Local().Has(d) {
		t.Fatal("corrupt remote blob landed in the local store")
	}
	if err := c.Fetch(context.Background(), d); !errors.Is(err, opm.ErrIntegrity) {
		t.Fatalf("Fetch: got %v, want an integrity error", err)
	}
	if c.Local().Has(d) {
		t.Fatal("corrupt remote blob landed in the local store on Fetch")
	}

	// Repaired remote: a later call succeeds.
	if err := os.WriteFile(remoteFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	castest.MustRead(t, c, d, b)
}

func TestCacheRefetchesCorruptLocal(t *testing.T) {
	c, remote, _ := newCache(t)
	b, d := castest.Blob(1, 300_000)
	castest.MustPut(t, c, d, b)
	corruptFile(t, c.Local().Path(d))

	if _, err := castest.ReadAll(c, d); !errors.Is(err, opm.ErrIntegrity) {
		t.Fatalf("read of corrupt local blob: got %v, want an integrity error", err)
	}
	if c.Local().Has(d) {
		t.Fatal("corrupt local blob kept")
	}
	castest.MustRead(t, c, d, b)
	if n := remote.opens.Load(); n != 1 {
		t.Fatalf("remote opened %d times, want 1", n)
	}
}

func TestCachePutRemoteFirst(t *testing.T) {
	local := openLocal(t, nil)
	c := cas.NewCache(local, failingPut{openBucket(t, "mem://")})
	defer c.Close()
	b, d := castest.Blob(1, 1000)
	err := c.Put(context.Background(), d, int64(len(b)), bytesReader(b))
	if !errors.Is(err, errUpload) {
		t.Fatalf("Put: got %v, want the upload error", err)
	}
	if local.Has(d) {
		t.Fatal("blob visible locally although the remote refused it")
	}
}

func TestCachePutUploadsLocalBlob(t *testing.T) {
	c, remote, _ := newCache(t)
	b, d := castest.Blob(1, 1000)
	castest.MustPut(t, c.Local(), d, b)
	castest.MustPut(t, c, d, b)
	castest.MustRead(t, remote.Store, d, b)
}

func TestCacheStat(t *testing.T) {
	c, remote, _ := newCache(t)
	b, d := castest.Blob(1, 1234)
	castest.MustPut(t, remote.Store, d, b)
	n, err := c.Stat(context.Background(), d)
	if err != nil || n != 1234 {
		t.Fatalf("Stat: got %d, %v; want 1234", n, err)
	}
	if c.Local().Has(d) {
		t.Fatal("Stat fetched the blob")
	}
}
