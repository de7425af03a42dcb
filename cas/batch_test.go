package cas

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestBatch(t *testing.T) {
	l, err := OpenLocal(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	want := map[digest.Digest][]byte{}
	var total int64
	b := l.NewBatch()
	for i, size := range []int{0, 1, 5000, smallFile, smallFile + 1, 3 << 20} {
		body := make([]byte, size)
		for j := range body {
			body[j] = byte(i + j*7)
		}
		name := filepath.Join(src, fmt.Sprint(i))
		if err := os.WriteFile(name, body, 0o644); err != nil {
			t.Fatal(err)
		}
		d, n, err := b.IngestFile(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if d != digest.FromBytes(body) || n != int64(size) {
			t.Fatalf("file %d: got %s %d", i, d, n)
		}
		if l.Has(d) {
			t.Fatalf("file %d visible before Commit", i)
		}
		want[d] = body
		total += n
	}
	// The same content twice in one batch is stored once.
	if _, _, err := b.IngestFile(context.Background(), filepath.Join(src, "1")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	for d, body := range want {
		got, err := os.ReadFile(l.Path(d))
		if err != nil || string(got) != string(body) {
			t.Fatalf("%s: %v", d, err)
		}
		if fi, _ := os.Stat(l.Path(d)); fi.Mode().Perm() != 0o444 {
			t.Fatalf("%s: mode %v", d, fi.Mode())
		}
	}
	assertNoTemp(t, l)
	if got := l.Added(); got != total {
		t.Fatalf("Added after the batch: %d, want %d", got, total)
	}

	// A discarded batch leaves nothing.
	b = l.NewBatch()
	os.WriteFile(filepath.Join(src, "new"), []byte("never stored"), 0o644)
	d, _, err := b.IngestFile(context.Background(), filepath.Join(src, "new"))
	if err != nil {
		t.Fatal(err)
	}
	b.Discard()
	if l.Has(d) {
		t.Fatal("discarded blob is visible")
	}
	assertNoTemp(t, l)
}

func assertNoTemp(t *testing.T, l *Local) {
	t.Helper()
	left, _ := os.ReadDir(filepath.Join(l.dir, "tmp"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
