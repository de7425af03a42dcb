package opmfs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/openpm/opm/cas/castest"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

// TestEvictOpenFile: a file held open in the mount is not evicted by a prune that evicts every other blob, and keeps
// reading the right bytes; once closed it is evicted, and a fresh open
// fetches it again from the bucket.
func TestEvictOpenFile(t *testing.T) {
	opmtest.RequireFUSE(t)
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "passthrough"}[pt], func(t *testing.T) {
			ctx := context.Background()
			r := bucketHome(t)
			big, dBig := castest.Blob(1, 3<<20)
			small, dSmall := castest.Blob(2, 5000)
			src := opmtest.WriteTree(t, map[string]string{"big": string(big), "small": string(small)})
			push(t, r, "acme/web/site:v1", src)

			_, mnt := mountHome(t, r, opmfs.Options{Passthrough: pt, NoOverlay: true})

			f, err := os.Open(filepath.Join(mnt, "acme/web/site/v1/big"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 1000)
			if _, err := io.ReadFull(f, head); err != nil {
				t.Fatal(err)
			}
			if !r.BlobInUse(dBig) || r.BlobInUse(dSmall) {
				t.Fatalf("in use: big %v, small %v", r.BlobInUse(dBig), r.BlobInUse(dSmall))
			}
			res, err := r.Prune(ctx, registry.PruneOptions{All: true})
			if err != nil {
				t.Fatal(err)
			}
			if !r.HasLocal(dBig) || r.HasLocal(dSmall) || res.KeptInUse != 1 {
				t.Fatalf("prune with big open: big local %v, small local %v, %+v", r.HasLocal(dBig), r.HasLocal(dSmall), res)
			}
			rest, err := io.ReadAll(f)
			if err != nil || !bytes.Equal(append(head, rest...), big) {
				t.Fatalf("reading the open file after prune: %d bytes, %v", len(head)+len(rest), err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			waitReleased(t, r)
			if _, err := r.Prune(ctx, registry.PruneOptions{All: true}); err != nil {
				t.Fatal(err)
			}
			if r.HasLocal(dBig) {
				t.Fatal("closed file's blob not evicted")
			}
			for name, want := range map[string][]byte{"big": big, "small": small} {
				got, err := os.ReadFile(filepath.Join(mnt, "acme/web/site/v1", name))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s after eviction: %d bytes, %v", name, len(got), err)
				}
			}
			if !r.HasLocal(dBig) || !r.HasLocal(dSmall) {
				t.Fatal("reads after eviction did not fetch the blobs again")
			}
			waitReleased(t, r)
		})
	}
}

// bucketHome opens a new home whose blobs are in a file:// bucket.
func bucketHome(t *testing.T) *registry.Registry {
	t.Helper()
	ctx := context.Background()
	home := t.TempDir()
	r, err := registry.Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetConfig(context.Background(), "opm.blobs", "file://"+t.TempDir()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if r, err = registry.Open(ctx, home); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// waitReleased waits until the mount holds no blob open: the kernel sends
// RELEASE after close(2) has returned.
func waitReleased(t *testing.T, r *registry.Registry) {
	t.Helper()
	opmtest.Eventually(t, "the mount to release every blob once every file was closed", func() error {
		if n := r.BlobsInUse(); n != 0 {
			return fmt.Errorf("%d blobs still held open", n)
		}
		return nil
	})
}

// TestOpenDuringEviction: while eviction removes one blob (its unlink and
// index write made slow here), opens of other blobs through the mount
// complete; an open of the blob being removed waits for the removal and
// then fetches it again. Eviction holds no lock an open waits on across
// its file-system or Badger work.
func TestOpenDuringEviction(t *testing.T) {
	opmtest.RequireFUSE(t)
	ctx := context.Background()
	r := bucketHome(t)
	first, dFirst := castest.Blob(1, 4000)
	other, dOther := castest.Blob(2, 5000)
	push(t, r, "acme/web/site:v1", opmtest.WriteTree(t, map[string]string{"first": string(first), "other": string(other)}))
	_, mnt := mountHome(t, r, opmfs.Options{NoOverlay: true})

	// The eviction of the first blob it removes blocks until released
	// (at the latest when the test ends: a failed test must not leave the
	// mount's reads and the prune stuck, or the unmount waits for them).
	entered, release := make(chan string, 16), make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() {
		releaseOnce.Do(func() {
			r.SetEvictHook(nil)
			close(release)
		})
	}
	t.Cleanup(unblock)
	r.SetEvictHook(func(d digest.Digest) {
		if d == dFirst || d == dOther {
			entered <- string(d)
			<-release
		}
	})
	pruned := make(chan error, 1)
	go func() {
		_, err := r.Prune(ctx, registry.PruneOptions{All: true})
		pruned <- err
	}()
	var evicting string
	select {
	case evicting = <-entered:
	case <-time.After(opmtest.WaitTimeout):
		t.Fatal("eviction did not start")
	}
	open := func(name string) <-chan error {
		done := make(chan error, 1)
		go func() {
			b, err := os.ReadFile(filepath.Join(mnt, "acme/web/site/v1", name))
			if err == nil && !bytes.Equal(b, map[string][]byte{"first": first, "other": other}[name]) {
				err = fmt.Errorf("%s: wrong bytes", name)
			}
			done <- err
		}()
		return done
	}
	busy, free := "first", "other"
	if evicting == string(dOther) {
		busy, free = "other", "first"
	} else if evicting != string(dFirst) {
		t.Fatalf("evicting %s, neither blob", evicting)
	}
	// An open of another blob completes while the eviction is stuck.
	select {
	case err := <-open(free):
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(opmtest.WaitTimeout): // stuck: the eviction waits for the test
		t.Fatalf("an open of %s waited for the eviction of %s", free, busy)
	}
	// An open of the blob being removed waits for the removal. (Not
	// answered within the window is what the test can see of waiting; on
	// a slow machine the window proves less, it never fails wrongly.)
	waiting := open(busy)
	select {
	case err := <-waiting:
		t.Fatalf("an open of %s did not wait for its eviction: %v", busy, err)
	case <-time.After(200 * time.Millisecond):
	}
	unblock()
	if err := <-waiting; err != nil {
		t.Fatalf("open of %s after its eviction: %v", busy, err)
	}
	if err := <-pruned; err != nil {
		t.Fatal(err)
	}
}
