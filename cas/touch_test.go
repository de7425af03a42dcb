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

	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
)

// TestLocalUseIndex: a store given an index after it was opened records
// in it from then on: new blobs, and accesses (one write per blob per
// TouchEvery), including of files the index did not know.
func TestLocalUseIndex(t *testing.T) {
	ctx := context.Background()
	l, err := cas.OpenLocal(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := cas.OpenIndex(context.Background(), t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	a, da := castest.Blob(1, 1000)
	b, db := castest.Blob(2, 2000)
	castest.MustPut(t, l, da, a) // before the index
	if got := l.Added(); got != 1000 {
		t.Fatalf("Added after one blob: %d", got)
	}
	castest.MustPut(t, l, da, a) // already there
	if got := l.Added(); got != 1000 {
		t.Fatalf("Added after storing the same blob again: %d", got)
	}

	l.UseIndex(idx)
	castest.MustPut(t, l, db, b)
	if e, err := idx.Get(db); err != nil || e.Size != 2000 || e.State != cas.StatePresent {
		t.Fatalf("entry of a blob stored after UseIndex: %+v, %v", e, err)
	}
	// A file the index does not know gets an entry when it is read.
	start := time.Now()
	l.Touch(da)
	e, err := idx.Get(da)
	if err != nil || e.Size != 1000 || e.LastAccess.Before(start) {
		t.Fatalf("entry after touching an unknown file: %+v, %v", e, err)
	}
	// Touched again within TouchEvery: no write.
	old := start.Add(-time.Hour)
	if err := idx.TouchAt([]digest.Digest{da, db}, old); err != nil {
		t.Fatal(err)
	}
	l.Touch(da)
	if e, _ := idx.Get(da); !e.LastAccess.Equal(old) {
		t.Fatalf("a second touch within TouchEvery wrote %v", e.LastAccess)
	}
	// Reading a blob not touched lately notes it.
	rc, err := l.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("read: %d bytes, %v", len(got), err)
	}
	if e, _ := idx.Get(db); !e.LastAccess.After(old) {
		t.Fatalf("open did not note the access: %v", e.LastAccess)
	}
	// Without the index nothing is written.
	l.UseIndex(nil)
	if err := l.Delete(ctx, da); err != nil {
		t.Fatal(err)
	}
	if _, err := idx.Get(da); err != nil {
		t.Fatalf("a store without an index changed it: %v", err)
	}
}

// stateAtOpen wraps a store and notes the index state of each blob when
// the cache opens it at the remote.
type stateAtOpen struct {
	cas.Store
	idx   *cas.Index
	state cas.State
}

func (s *stateAtOpen) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	e, _ := s.idx.Get(d)
	s.state = e.State
	return s.Store.Open(ctx, d)
}

// TestCacheMarksFetchingWithUseIndex: a download into a store given its
// index by UseIndex (as a home does) is noted in that index.
func TestCacheMarksFetchingWithUseIndex(t *testing.T) {
	idx, err := cas.OpenIndex(context.Background(), t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	l := openLocal(t, nil)
	l.UseIndex(idx)
	remote := &stateAtOpen{Store: openBucket(t, "file://"+t.TempDir()), idx: idx}
	c := cas.NewCache(l, remote)
	defer c.Close()
	b, d := castest.Blob(3, 1000)
	castest.MustPut(t, remote.Store, d, b)
	castest.MustRead(t, c, d, b)
	if remote.state != cas.StateFetching {
		t.Fatalf("index state while downloading: %v, want fetching", remote.state)
	}
	if e, err := idx.Get(d); err != nil || e.State != cas.StatePresent {
		t.Fatalf("entry after the download: %+v, %v", e, err)
	}
}

// TestStoreAgainRefreshesModTime: writing a blob that is already stored,
// by Ingest or by a Batch, makes its file's modification time now (garbage
// collection spares young files).
func TestStoreAgainRefreshesModTime(t *testing.T) {
	ctx := context.Background()
	l := openLocal(t, nil)
	b, d := castest.Blob(4, 3000)
	src := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(src, b, 0o644); err != nil {
		t.Fatal(err)
	}
	castest.MustPut(t, l, d, b)
	old := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	for _, again := range []struct {
		name  string
		store func() error
	}{
		{"Ingest", func() error { _, _, err := l.Ingest(ctx, bytes.NewReader(b)); return err }},
		{"Batch", func() error {
			bt := l.NewBatch()
			if _, _, err := bt.IngestFile(ctx, src); err != nil {
				return err
			}
			return bt.Commit()
		}},
	} {
		if err := os.Chtimes(l.Path(d), old, old); err != nil {
			t.Fatal(err)
		}
		if err := again.store(); err != nil {
			t.Fatalf("%s: %v", again.name, err)
		}
		fi, err := os.Stat(l.Path(d))
		if err != nil || !fi.ModTime().After(old) {
			t.Fatalf("%s of a stored blob: modification time %v, %v; want after %v", again.name, fi.ModTime(), err, old)
		}
	}
}
