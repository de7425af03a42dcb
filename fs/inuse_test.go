package fs_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openpm/opm/cas/castest"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

// TestEvictOpenFile: the mount is the registry's BlobHolder. A file held
// open is not evicted by a prune that evicts every other blob, and keeps
// reading the right bytes; once closed it is evicted, and a fresh open
// fetches it again from the bucket.
func TestEvictOpenFile(t *testing.T) {
	opmtest.RequireFUSE(t)
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "passthrough"}[pt], func(t *testing.T) {
			ctx := context.Background()
			home := t.TempDir()
			r, err := registry.Open(ctx, home)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.SetConfig("opm.blobs", "file://"+t.TempDir()); err != nil {
				t.Fatal(err)
			}
			r.Close()
			if r, err = registry.Open(ctx, home); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			big, dBig := castest.Blob(1, 3<<20)
			small, dSmall := castest.Blob(2, 5000)
			src := opmtest.WriteTree(t, map[string]string{"big": string(big), "small": string(small)})
			push(t, r, "acme/web/site:v1", src)

			mnt := t.TempDir()
			m, err := opmfs.Mount(r, mnt, opmfs.Options{Passthrough: pt, Poll: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := m.Unmount(false); err != nil {
					m.Unmount(true)
				}
				m.Wait()
			})
			r.SetBlobHolder(m)

			f, err := os.Open(filepath.Join(mnt, "acme/web/site/v1/big"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 1000)
			if _, err := io.ReadFull(f, head); err != nil {
				t.Fatal(err)
			}
			if !m.InUse(dBig) || m.InUse(dSmall) {
				t.Fatalf("in use: big %v, small %v", m.InUse(dBig), m.InUse(dSmall))
			}
			res, err := r.Prune(ctx, registry.PruneOptions{All: true})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Local.Has(dBig) || r.Local.Has(dSmall) || res.KeptInUse != 1 {
				t.Fatalf("prune with big open: big local %v, small local %v, %+v", r.Local.Has(dBig), r.Local.Has(dSmall), res)
			}
			rest, err := io.ReadAll(f)
			if err != nil || !bytes.Equal(append(head, rest...), big) {
				t.Fatalf("reading the open file after prune: %d bytes, %v", len(head)+len(rest), err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			waitReleased(t, m)
			if _, err := r.Prune(ctx, registry.PruneOptions{All: true}); err != nil {
				t.Fatal(err)
			}
			if r.Local.Has(dBig) {
				t.Fatal("closed file's blob not evicted")
			}
			for name, want := range map[string][]byte{"big": big, "small": small} {
				got, err := os.ReadFile(filepath.Join(mnt, "acme/web/site/v1", name))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s after eviction: %d bytes, %v", name, len(got), err)
				}
			}
			if !r.Local.Has(dBig) || !r.Local.Has(dSmall) {
				t.Fatal("reads after eviction did not fetch the blobs again")
			}
			waitReleased(t, m)
		})
	}
}

// waitReleased waits until the mount holds no blob open: the kernel sends
// RELEASE after close(2) has returned.
func waitReleased(t *testing.T, m *opmfs.FS) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); m.OpenBlobs() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d blobs still held open 10 s after every file was closed", m.OpenBlobs())
		}
	}
}
