package registry

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
)

func gc(t *testing.T, r *Registry, opts GCOptions) *GCResult {
	t.Helper()
	res, err := r.GC(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func removed(res *GCResult) []digest.Digest {
	var out []digest.Digest
	for _, b := range res.Removed {
		out = append(out, b.Digest)
	}
	slices.Sort(out)
	return out
}

func digests(ds ...digest.Digest) []digest.Digest {
	slices.Sort(ds)
	return ds
}

// later moves the registry's clock past every blob's grace period.
func later(r *Registry, d time.Duration) { r.now = func() time.Time { return time.Now().Add(d) } }

// TestGCLocal: in a home without a bucket, gc removes exactly the blobs no
// tag names any more, and only once they are out of both the grace period
// and the kept history; every remaining tag still pulls.
func TestGCLocal(t *testing.T) {
	ctx := context.Background()
	r := openHome(t, t.TempDir())
	v1 := pushTree(t, r, "ns/p/r:v1", map[string]string{"same": "kept", "old": "only in v1"})
	v2 := pushTree(t, r, "ns/p/r:v2", map[string]string{"same": "kept", "new": "only in v2"})
	old, same := fileDigest(t, v1, "old").Digest, fileDigest(t, v2, "same").Digest
	if _, err := r.Remove(ctx, mustRef(t, "ns/p/r:v1")); err != nil {
		t.Fatal(err)
	}

	// Everything was just written: the grace period keeps it all.
	if res := gc(t, r, GCOptions{Grace: time.Hour}); len(res.Removed) != 0 || res.Young != 1 {
		t.Fatalf("inside grace: removed %v, young %d", removed(res), res.Young)
	}
	later(r, 2*time.Hour)
	// v1 was removed within the kept period: its blobs stay.
	if res := gc(t, r, GCOptions{Grace: time.Hour, Keep: 24 * time.Hour}); len(res.Removed) != 0 {
		t.Fatalf("inside keep: removed %v", removed(res))
	}
	res := gc(t, r, GCOptions{Grace: time.Hour, DryRun: true})
	if !slices.Equal(removed(res), digests(old)) || !r.local.Has(old) {
		t.Fatalf("dry run: %v, blob still there %v", removed(res), r.local.Has(old))
	}
	res = gc(t, r, GCOptions{Grace: time.Hour})
	if !slices.Equal(removed(res), digests(old)) || res.BytesFreed != int64(len("only in v1")) {
		t.Fatalf("removed %v (%d bytes), want %v", removed(res), res.BytesFreed, old)
	}
	if r.local.Has(old) || !r.local.Has(same) {
		t.Fatal("gc removed the wrong blob")
	}
	if _, err := r.Pull(ctx, mustRef(t, "ns/p/r:v2"), filepath.Join(t.TempDir(), "out"), false, nil); err != nil {
		t.Fatalf("the remaining tag does not pull: %v", err)
	}
	if f := fsck(t, r, FsckOptions{ReadData: true}); f.Damaged() != 0 {
		t.Fatalf("fsck after gc: %v", kinds(f))
	}
	if res := gc(t, r, GCOptions{Grace: time.Hour}); len(res.Removed) != 0 {
		t.Fatalf("second gc removed %v", removed(res))
	}
}

// TestGCBucket: with a bucket, gc collects the bucket (and the local
// copies), and keeps what another registry sharing the bucket names.
func TestGCBucket(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	withBucket := func(dir string) *Registry {
		r := openHome(t, dir)
		if err := r.SetConfig(context.Background(), "opm.blobs", url); err != nil {
			t.Fatal(err)
		}
		r.Close()
		return openHome(t, dir)
	}
	a := withBucket(t.TempDir())
	b := withBucket(t.TempDir())
	v1 := pushTree(t, a, "ns/p/r:v1", map[string]string{"gone": "only a's v1"})
	other := pushTree(t, b, "ns/p/other:v1", map[string]string{"f": "only b names this"})
	gone, theirs := fileDigest(t, v1, "gone").Digest, fileDigest(t, other, "f").Digest
	if _, err := a.Remove(ctx, mustRef(t, "ns/p/r:v1")); err != nil {
		t.Fatal(err)
	}
	later(a, 2*time.Hour)

	// a does not know b: b's blob looks unnamed. With b as a remote of a
	// that uses the same bucket, gc consults b's metadata and keeps it.
	if res := gc(t, a, GCOptions{Grace: time.Hour, DryRun: true}); !slices.Equal(removed(res), digests(gone, theirs)) {
		t.Fatalf("dry run without the remote: %v", removed(res))
	}
	if err := a.AddRemote(ctx, Remote{Name: "b", URL: b.Paths().Meta(), Blobs: url}); err != nil {
		t.Fatal(err)
	}
	res := gc(t, a, GCOptions{Grace: time.Hour})
	if !slices.Equal(removed(res), digests(gone)) || len(res.Heads) != 2 {
		t.Fatalf("removed %v from heads %v, want only %s", removed(res), res.Heads, gone)
	}
	if _, err := a.bucket.Stat(ctx, gone); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("removed blob still in the bucket: %v", err)
	}
	if a.local.Has(gone) {
		t.Fatal("removed blob's local copy kept")
	}
	if _, err := a.bucket.Stat(ctx, theirs); err != nil {
		t.Fatalf("b's blob was collected: %v", err)
	}

	// A remote sharing the bucket that cannot be read (its repository is
	// gone since it was added) stops gc.
	lost := filepath.Join(t.TempDir(), "lost.git")
	if _, err := exec.Command("git", "init", "-q", "--bare", lost).CombinedOutput(); err != nil {
		t.Fatal(err)
	}
	if err := a.AddRemote(ctx, Remote{Name: "lost", URL: lost, Blobs: url}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(lost); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GC(ctx, GCOptions{Grace: time.Hour}); err == nil {
		t.Fatal("gc ran although a remote sharing the bucket could not be fetched")
	}
}

// TestGCRefusesUnreadableMetadata: a manifest that does not parse stops gc
// before anything is removed.
func TestGCRefusesUnreadableMetadata(t *testing.T) {
	ctx := context.Background()
	r := openHome(t, t.TempDir())
	v1 := pushTree(t, r, "ns/p/r:v1", map[string]string{"a": "alpha"})
	if _, err := r.Remove(ctx, mustRef(t, "ns/p/r:v1")); err != nil {
		t.Fatal(err)
	}
	_, _, err := r.meta.Update(ctx, gitmeta.Signature{Name: "x", Email: "x@x"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{{Path: "ns/p/r/tags/bad.json", Data: []byte("{")}}, gitmeta.Message{Subject: "bad"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	later(r, 2*time.Hour)
	if _, err := r.GC(ctx, GCOptions{}); err == nil {
		t.Fatal("gc ran over a manifest that does not parse")
	}
	if !r.local.Has(fileDigest(t, v1, "a").Digest) {
		t.Fatal("gc removed a blob before refusing")
	}
}

// TestGCSparesReusedBlob: a push that finds its content already stored
// makes that blob young again, so a gc running alongside spares it even
// though no tag named it when gc looked.
func TestGCSparesReusedBlob(t *testing.T) {
	ctx := context.Background()
	r := openHome(t, t.TempDir())
	v1 := pushTree(t, r, "ns/p/r:v1", map[string]string{"big": "reused later", "small": "never again"})
	if _, err := r.Remove(ctx, mustRef(t, "ns/p/r:v1")); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-2 * time.Hour)
	r.local.Walk(func(d digest.Digest, _ int64) error { return os.Chtimes(r.local.Path(d), long, long) })
	pushTree(t, r, "ns/p/other:v1", map[string]string{"copy": "reused later"})
	// What gc would see if it listed the store just before that push.
	reused := fileDigest(t, v1, "big").Digest
	if _, err := r.Remove(ctx, mustRef(t, "ns/p/other:v1")); err != nil {
		t.Fatal(err)
	}
	res := gc(t, r, GCOptions{Grace: time.Hour})
	if !slices.Equal(removed(res), digests(fileDigest(t, v1, "small").Digest)) || !r.local.Has(reused) {
		t.Fatalf("removed %v; the reused blob is kept: %v", removed(res), r.local.Has(reused))
	}
}
