package cas_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
)

func TestLocalLayout(t *testing.T) {
	dir := t.TempDir()
	l, err := cas.OpenLocal(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, d := castest.Blob(1, 10)
	castest.MustPut(t, l, d, b)
	want := filepath.Join(dir, "sha256", d.Encoded()[:2], d.Encoded())
	if l.Path(d) != want {
		t.Fatalf("Path: got %s, want %s", l.Path(d), want)
	}
	fi, err := os.Stat(want)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Fatalf("blob file mode %v, want 0444", fi.Mode().Perm())
	}
	if l.Path("sha256:nope") != "" {
		t.Fatal("Path of an invalid digest is not empty")
	}
}

func TestIngest(t *testing.T) {
	ctx := context.Background()
	l := openLocal(t, nil)
	b, want := castest.Blob(1, 5<<20+1)

	d, n, err := l.Ingest(ctx, bytes.NewReader(b))
	if err != nil || d != want || n != int64(len(b)) {
		t.Fatalf("Ingest: got %s, %d, %v; want %s, %d", d, n, err, want, len(b))
	}
	castest.MustRead(t, l, d, b)

	src := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(src, b, 0o644); err != nil {
		t.Fatal(err)
	}
	d, n, err = l.IngestFile(ctx, src) // already present
	if err != nil || d != want || n != int64(len(b)) {
		t.Fatalf("IngestFile: got %s, %d, %v; want %s, %d", d, n, err, want, len(b))
	}

	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, n, err = l.IngestFile(ctx, empty)
	if err != nil || d != digest.FromBytes(nil) || n != 0 {
		t.Fatalf("IngestFile of an empty file: got %s, %d, %v", d, n, err)
	}
	if _, _, err := l.IngestFile(ctx, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("IngestFile of a missing file succeeded")
	}
}

func TestIngestCancelled(t *testing.T) {
	l := openLocal(t, nil)
	b, d := castest.Blob(1, 4<<20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := l.Ingest(ctx, bytes.NewReader(b)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ingest with a cancelled context: got %v", err)
	}
	if l.Has(d) {
		t.Fatal("cancelled ingest stored the blob")
	}
}

func TestCopyOut(t *testing.T) {
	ctx := context.Background()
	l := openLocal(t, nil)
	b, d := castest.Blob(1, 3<<20+5)
	castest.MustPut(t, l, d, b)

	var out bytes.Buffer
	if err := l.CopyOut(ctx, d, &out); err != nil {
		t.Fatalf("CopyOut: %v", err)
	}
	if !bytes.Equal(out.Bytes(), b) {
		t.Fatal("CopyOut wrote different bytes")
	}

	corruptFile(t, l.Path(d))
	out.Reset()
	if err := l.CopyOut(ctx, d, &out); !errors.Is(err, opm.ErrIntegrity) {
		t.Fatalf("CopyOut of a corrupt blob: got %v, want an integrity error", err)
	}
	if l.Has(d) {
		t.Fatal("corrupt blob kept after CopyOut")
	}
	if err := l.CopyOut(ctx, d, &out); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("CopyOut of a missing blob: got %v", err)
	}
}

func TestWalkAndCleanTemp(t *testing.T) {
	dir := t.TempDir()
	l, err := cas.OpenLocal(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[digest.Digest]int64{}
	for i := range 5 {
		b, d := castest.Blob(uint64(i), 100*i)
		castest.MustPut(t, l, d, b)
		want[d] = int64(len(b))
	}
	// Foreign files are skipped.
	junk := filepath.Join(dir, "sha256", "00", "junk")
	if err := os.MkdirAll(filepath.Dir(junk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[digest.Digest]int64{}
	if err := l.Walk(func(d digest.Digest, size int64) error {
		got[d] = size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Walk: got %d blobs, want %d", len(got), len(want))
	}
	for d, n := range want {
		if got[d] != n {
			t.Fatalf("Walk: %s has size %d, want %d", d, got[d], n)
		}
	}

	for _, name := range []string{"put-1", "put-2"} {
		if err := os.WriteFile(filepath.Join(dir, "tmp", name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.CleanTemp(); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(left) != 0 {
		t.Fatalf("CleanTemp left %d files", len(left))
	}
}

func TestLocalRecordsInIndex(t *testing.T) {
	ctx := context.Background()
	idx := openIndex(t)
	l := openLocal(t, idx)
	b, d := castest.Blob(1, 1000)
	castest.MustPut(t, l, d, b)
	e, err := idx.Get(d)
	if err != nil || e.Size != 1000 || e.State != cas.StatePresent || e.Verified.IsZero() {
		t.Fatalf("entry after Put: %+v, %v", e, err)
	}
	castest.MustRead(t, l, d, b)
	e2, _ := idx.Get(d)
	if !e2.LastAccess.After(e.LastAccess) || !e2.Verified.After(e.Verified) {
		t.Fatalf("read did not update access and verification times: %+v then %+v", e, e2)
	}
	if err := l.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := idx.Get(d); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("entry after Delete: %v", err)
	}
}
