package cas_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/opmtest"
)

func TestIndexEntries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	idx, err := cas.OpenIndex(context.Background(), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, d := castest.Blob(1, 10)
	if _, err := idx.Get(d); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("Get of a missing entry: %v", err)
	}
	if err := idx.Touch(d); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("Touch of a missing entry: %v", err)
	}
	if err := idx.MarkFetching(d); err != nil {
		t.Fatal(err)
	}
	if e, err := idx.Get(d); err != nil || e.State != cas.StateFetching {
		t.Fatalf("after MarkFetching: %+v, %v", e, err)
	}
	if err := idx.Record(d, 10); err != nil {
		t.Fatal(err)
	}
	before, _ := idx.Get(d)
	if err := idx.Touch(d); err != nil {
		t.Fatal(err)
	}
	if err := idx.Close(); err != nil {
		t.Fatal(err)
	}

	idx, err = cas.OpenIndex(context.Background(), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	e, err := idx.Get(d)
	if err != nil {
		t.Fatal(err)
	}
	if e.Size != 10 || e.State != cas.StatePresent ||
		!e.Verified.Equal(before.Verified) || e.LastAccess.Before(before.LastAccess) {
		t.Fatalf("entry after reopen: %+v (before Touch: %+v)", e, before)
	}
	if err := idx.Delete(d); err != nil {
		t.Fatal(err)
	}
	if err := idx.Delete(d); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := idx.Get(d); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
}

func TestIndexLockWait(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	first, err := cas.OpenIndex(context.Background(), dir, 0)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, err = cas.OpenIndex(context.Background(), dir, 300*time.Millisecond)
	if !errors.Is(err, opm.ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("second open gave up after %s, want at least 300ms", waited)
	}

	// Released while a second opener waits: it gets the index.
	time.AfterFunc(200*time.Millisecond, func() { first.Close() })
	second, err := cas.OpenIndex(context.Background(), dir, opmtest.WaitTimeout)
	if err != nil {
		t.Fatalf("open after release: %v", err)
	}
	second.Close()
}

func TestIndexRebuild(t *testing.T) {
	idx := openIndex(t)
	l := openLocal(t, idx)
	b1, d1 := castest.Blob(1, 100)
	b2, d2 := castest.Blob(2, 200)
	castest.MustPut(t, l, d1, b1)
	castest.MustPut(t, l, d2, b2)

	// Behind the index's back: d2's file goes, d3's file appears.
	if err := os.Remove(l.Path(d2)); err != nil {
		t.Fatal(err)
	}
	b3, d3 := castest.Blob(3, 300)
	bare, err := cas.OpenLocal(filepath.Dir(filepath.Dir(filepath.Dir(l.Path(d1)))), nil)
	if err != nil {
		t.Fatal(err)
	}
	castest.MustPut(t, bare, d3, b3)

	if err := idx.Rebuild(l); err != nil {
		t.Fatal(err)
	}
	if e, err := idx.Get(d1); err != nil || e.Size != 100 || e.Verified.IsZero() {
		t.Fatalf("kept entry: %+v, %v", e, err)
	}
	if _, err := idx.Get(d2); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("entry of a removed file: %v", err)
	}
	if e, err := idx.Get(d3); err != nil || e.Size != 300 || e.State != cas.StatePresent || !e.Verified.IsZero() {
		t.Fatalf("new entry: %+v, %v", e, err)
	}
}
