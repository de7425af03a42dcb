package cas_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/opmtest"
)

// corruptFile flips the first byte of a file (or writes one into an empty one).
func corruptFile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		b = []byte{0}
	} else {
		b[0] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// corruptKey flips the first byte of a blob in a bucket behind the store's back.
func corruptKey(t *testing.T, b *blob.Bucket, d digest.Digest) {
	t.Helper()
	ctx := context.Background()
	key := "blobs/sha256/" + d.Encoded()
	data, err := b.ReadAll(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data[0] ^= 0xff
	if err := b.WriteAll(ctx, key, data, nil); err != nil {
		t.Fatal(err)
	}
}

// openLocal opens a Local store in a new directory and, at cleanup, checks
// that no temporary file was left behind.
func openLocal(t *testing.T, idx *cas.Index) *cas.Local {
	t.Helper()
	dir := t.TempDir()
	l, err := cas.OpenLocal(dir, idx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		left, _ := os.ReadDir(filepath.Join(dir, "tmp"))
		if len(left) > 0 {
			t.Errorf("%d temporary files left behind, e.g. %s", len(left), left[0].Name())
		}
	})
	return l
}

func openIndex(t *testing.T) *cas.Index {
	t.Helper()
	idx, err := cas.OpenIndex(context.Background(), filepath.Join(t.TempDir(), "index"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	return idx
}

func openBucket(t *testing.T, url string) *cas.Bucket {
	t.Helper()
	b, err := cas.OpenBucket(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLocal(t *testing.T) {
	var cur *cas.Local
	castest.Suite{
		New: func(t *testing.T) cas.Store {
			cur = openLocal(t, nil)
			return cur
		},
		Corrupt: func(t *testing.T, d digest.Digest) { corruptFile(t, cur.Path(d)) },
	}.Run(t)
}

func TestLocalWithIndex(t *testing.T) {
	var cur *cas.Local
	castest.Suite{
		New: func(t *testing.T) cas.Store {
			cur = openLocal(t, openIndex(t))
			return cur
		},
		Corrupt: func(t *testing.T, d digest.Digest) { corruptFile(t, cur.Path(d)) },
	}.Run(t)
}

func TestCacheOverFileBucket(t *testing.T) {
	var cur *cas.Cache
	castest.Suite{
		New: func(t *testing.T) cas.Store {
			cur = cas.NewCache(openLocal(t, openIndex(t)), openBucket(t, "file://"+t.TempDir()))
			return cur
		},
		Corrupt: func(t *testing.T, d digest.Digest) { corruptFile(t, cur.Local().Path(d)) },
	}.Run(t)
}

func TestBucketFile(t *testing.T) {
	var dir string
	castest.Suite{
		New: func(t *testing.T) cas.Store {
			dir = t.TempDir()
			return openBucket(t, "file://"+dir)
		},
		Corrupt: func(t *testing.T, d digest.Digest) {
			corruptFile(t, filepath.Join(dir, "blobs", "sha256", d.Encoded()))
		},
	}.Run(t)
}

func TestBucketMem(t *testing.T) {
	var raw *blob.Bucket
	castest.Suite{
		New: func(t *testing.T) cas.Store {
			raw = memblob.OpenBucket(nil)
			return cas.NewBucket(raw)
		},
		Corrupt: func(t *testing.T, d digest.Digest) { corruptKey(t, raw, d) },
	}.Run(t)
}

func TestBucketMemURL(t *testing.T) {
	castest.RunSuite(t, func(t *testing.T) cas.Store { return openBucket(t, "mem://") })
}

func TestBucketS3(t *testing.T) {
	var url string
	castest.Suite{
		New: func(t *testing.T) cas.Store {
			url = castest.StartS3(t)
			return openBucket(t, url)
		},
		Corrupt: corruptAt(&url),
	}.Run(t)
}

// corruptAt corrupts a blob in the bucket *url names (the current store's)
// through gocloud directly.
func corruptAt(url *string) func(*testing.T, digest.Digest) {
	return func(t *testing.T, d digest.Digest) {
		raw, err := blob.OpenBucket(context.Background(), *url)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		corruptKey(t, raw, d)
	}
}

// TestBucketServers runs the suite against a real server of every cloud
// kind on loopback: SeaweedFS (s3://), fake-gcs-server (gs://) and Azurite
// (azblob://). Each store gets a new bucket; the server is killed in the
// last test.
func TestBucketServers(t *testing.T) {
	for _, kind := range []string{"s3", "gs", "azblob"} {
		t.Run(kind, func(t *testing.T) {
			srv := castest.StartServer(t, kind)
			srv.SetEnv(t)
			t.Setenv("OPM_RETRY_MAX", "100ms")
			var url string
			castest.Suite{
				New: func(t *testing.T) cas.Store {
					url = srv.NewBucket(t)
					return openBucket(t, url)
				},
				Corrupt: corruptAt(&url),
				Kill:    func(t *testing.T) { srv.Kill() },
			}.Run(t)
		})
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// TestCopyOutCancelled: a copy whose context is already done returns (it
// used to wait forever for a first chunk that was never copied).
func TestCopyOutCancelled(t *testing.T) {
	l, err := cas.OpenLocal(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, d := castest.Blob(7, 1<<20)
	castest.MustPut(t, l, d, b)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- l.CopyOut(ctx, d, out) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled copy succeeded")
		}
	case <-time.After(opmtest.WaitTimeout):
		t.Fatal("CopyOut with a cancelled context did not return")
	}
}
