package cas_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/opmtest"
)

// counting wraps a real store and counts Opens. An Open for one of the
// concurrent readers of readConcurrently waits until every other one waits
// for the download it serves, so that the readers surely overlap: a reader
// that came after the download ended would start its own.
type counting struct {
	cas.Store
	opens atomic.Int32

	mu      sync.Mutex
	readers []*reader
}

func (c *counting) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	c.opens.Add(1)
	if me, ok := ctx.Value(readerKey{}).(*reader); ok {
		c.mu.Lock()
		readers := c.readers
		c.mu.Unlock()
		err := opmtest.Wait("the other readers to wait for the download", func() error {
			if c.opens.Load() > 1 {
				return nil // a second download: the readers did not share one (the test fails on the count)
			}
			left := 0
			for _, r := range readers {
				if r != me && !r.waiting.Load() {
					left++
				}
			}
			if left > 0 {
				return fmt.Errorf("%d of %d not waiting yet", left, len(readers)-1)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return c.Store.Open(ctx, d)
}

// reader is the context of one reader of readConcurrently. It notes when
// the cache asks for its Done channel: a caller that joins a download in
// progress does so as it starts waiting for the download.
type reader struct {
	context.Context
	waiting atomic.Bool
}

type readerKey struct{}

func (r *reader) Done() <-chan struct{} {
	r.waiting.Store(true)
	return r.Context.Done()
}

func (r *reader) Value(key any) any {
	if key == (readerKey{}) {
		return r
	}
	return r.Context.Value(key)
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

// readConcurrently reads d through c from n goroutines at once: the
// download from remote waits until they all wait for it (see counting).
func readConcurrently(c *cas.Cache, remote *counting, d digest.Digest, n int) ([][]byte, []error) {
	readers := make([]*reader, n)
	for i := range readers {
		readers[i] = &reader{Context: context.Background()}
	}
	remote.mu.Lock()
	remote.readers = readers
	remote.mu.Unlock()
	defer func() {
		remote.mu.Lock()
		remote.readers = nil
		remote.mu.Unlock()
	}()
	got := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rc, err := c.Open(readers[i], d)
			if err != nil {
				errs[i] = err
				return
			}
			defer rc.Close()
			got[i], errs[i] = io.ReadAll(rc)
		})
	}
	wg.Wait()
	return got, errs
}

func TestCacheFetchesOnce(t *testing.T) {
	c, remote, _ := newCache(t)
	b, d := castest.Blob(1, 2<<20)
	castest.MustPut(t, remote.Store, d, b)

	got, errs := readConcurrently(c, remote, d, 16)
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

	_, errs := readConcurrently(c, remote, d, 4)
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
