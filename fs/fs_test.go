package opmfs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/openpm/opm"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

func push(t *testing.T, r *registry.Registry, ref string, dir string) *registry.PushResult {
	t.Helper()
	res, err := r.Push(context.Background(), mustRef(t, ref), []string{dir}, registry.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustRef(t *testing.T, s string) opm.Reference {
	ref, err := opm.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// mount opens a fresh home, lets fill push into it, and mounts it, FUSE
// alone (no overlay: these tests are of the FUSE tree; overlay_test.go has
// the overlay's).
func mount(t *testing.T, passthrough bool, fill func(r *registry.Registry)) (*registry.Registry, *opmfs.FS, string) {
	t.Helper()
	return mountOpts(t, opmfs.Options{Passthrough: passthrough, NoOverlay: true}, fill)
}

func mountOpts(t *testing.T, opts opmfs.Options, fill func(r *registry.Registry)) (*registry.Registry, *opmfs.FS, string) {
	t.Helper()
	opmtest.RequireFUSE(t)
	r, err := registry.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if fill != nil {
		fill(r)
	}
	m, mnt := mountHome(t, r, opts)
	return r, m, mnt
}

// mountHome mounts r on a new directory, polling its head every 50 ms,
// until the test ends.
func mountHome(t *testing.T, r *registry.Registry, opts opmfs.Options) (*opmfs.FS, string) {
	t.Helper()
	mnt := t.TempDir()
	opts.Poll = 50 * time.Millisecond
	m, err := opmfs.Mount(r, mnt, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(false); err != nil {
			t.Errorf("unmount: %v", err)
			m.Unmount(true)
		}
		m.Wait()
	})
	return m, mnt
}

func TestReadTree(t *testing.T) {
	for _, mode := range []string{"plain", "passthrough", "noopen"} {
		t.Run(mode, func(t *testing.T) {
			pt := mode == "passthrough"
			src := opmtest.WriteTree(t, map[string]string{"a.txt": "alpha\n", "sub/b.txt": strings.Repeat("b", 3<<20), "sub/deep/c": "", "z": "zz"})
			_, m, mnt := mountOpts(t, opmfs.Options{Passthrough: pt, NoOpen: mode == "noopen", NoOverlay: true}, func(r *registry.Registry) { push(t, r, "acme/web/site:v1", src) })
			if pt && !m.Passthrough() {
				opmtest.Unavailable(t, "the kernel refused FUSE passthrough (it needs root and Linux 6.9)")
			}
			for _, name := range []string{"a.txt", "sub/b.txt", "sub/deep/c", "z"} {
				want, _ := os.ReadFile(filepath.Join(src, name))
				got, err := os.ReadFile(filepath.Join(mnt, "acme/web/site/v1", name))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %d bytes, err %v; want %d bytes", name, len(got), err, len(want))
				}
			}
			ents, err := os.ReadDir(filepath.Join(mnt, "acme/web/site/v1"))
			if err != nil || len(ents) != 3 || ents[0].Name() != "a.txt" || ents[1].Name() != "sub" || !ents[1].IsDir() {
				t.Errorf("readdir: %v %v", ents, err)
			}
			for range 2 { // made at open, or (noopen) at stat
				b, err := os.ReadFile(filepath.Join(mnt, ".opm/status"))
				var st opmfs.Status
				if err != nil || json.Unmarshal(b, &st) != nil || st.Mountpoint != mnt || st.Passthrough != m.Passthrough() {
					t.Errorf("status: %v %q", err, b)
				}
			}
			posixtest.ReadDirConsistency(t, mnt)
			// A repository is listed without looking its tags up; a
			// tag listed first then looked up has its attributes.
			posixtest.ReadDirConsistency(t, filepath.Join(mnt, "acme/web/site"))
			if tags, err := os.ReadDir(filepath.Join(mnt, "acme/web/site")); err != nil || len(tags) != 1 || !tags[0].IsDir() {
				t.Errorf("tags: %v %v", tags, err)
			} else if fi, err := tags[0].Info(); err != nil || !fi.IsDir() || fi.ModTime().IsZero() {
				t.Errorf("tag info: %v %v", fi, err)
			}
			posixtest.ReadDirConsistency(t, filepath.Join(mnt, "acme/web/site/v1/sub"))
		})
	}
}

func TestReadOnly(t *testing.T) {
	src := opmtest.WriteTree(t, map[string]string{"a.txt": "alpha\n", "d/x": "x"})
	_, _, mnt := mount(t, false, func(r *registry.Registry) { push(t, r, "acme/web/site:v1", src) })
	pkg := filepath.Join(mnt, "acme/web/site/v1")
	file := filepath.Join(pkg, "a.txt")
	checks := map[string]error{
		"open write": func() error { _, err := os.OpenFile(file, os.O_WRONLY, 0); return err }(),
		"create":     func() error { _, err := os.Create(filepath.Join(pkg, "new")); return err }(),
		"mkdir":      os.Mkdir(filepath.Join(pkg, "nd"), 0o755),
		"mkdir top":  os.Mkdir(filepath.Join(mnt, "newns"), 0o755),
		"unlink":     os.Remove(file),
		"rmdir":      syscall.Rmdir(filepath.Join(pkg, "d")),
		"rm tag":     syscall.Rmdir(pkg),
		"rename":     os.Rename(file, filepath.Join(pkg, "b.txt")),
		"chmod":      os.Chmod(file, 0o777),
		"truncate":   os.Truncate(file, 0),
		"symlink":    os.Symlink("a.txt", filepath.Join(pkg, "l")),
		"link":       os.Link(file, filepath.Join(pkg, "h")),
		"setxattr":   syscall.Setxattr(file, "user.x", []byte("y"), 0),
	}
	for what, err := range checks {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: got %v, want EROFS", what, err)
		}
	}
}

// TestLiveUpdateRace moves tags while readers walk the mount (run it with
// -race): the new head shows within a second and no read fails, through
// FUSE alone and with the overlays coming and going.
func TestLiveUpdateRace(t *testing.T) {
	fuseOnly := opmfs.DefaultOptions()
	fuseOnly.NoOverlay = true
	for name, opts := range map[string]opmfs.Options{"fuse": fuseOnly, "overlay": opmfs.DefaultOptions()} {
		t.Run(name, func(t *testing.T) { testLiveUpdateRace(t, opts) })
	}
}

func testLiveUpdateRace(t *testing.T, opts opmfs.Options) {
	one := opmtest.WriteTree(t, map[string]string{"f": "one", "d/g": "gee"})
	two := opmtest.WriteTree(t, map[string]string{"f": "two", "d/g": "gee", "h": "aitch"})
	r, m, mnt := mountOpts(t, opts, func(r *registry.Registry) { push(t, r, "acme/web/site:v1", one) })
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				b, err := os.ReadFile(filepath.Join(mnt, "acme/web/site/v1/d/g"))
				if err != nil || string(b) != "gee" {
					errs <- errors.Join(err, errors.New("read "+string(b)))
					return
				}
				os.ReadDir(filepath.Join(mnt, "acme/web/site"))
			}
		}()
	}
	ctx := context.Background()
	for i := range 5 {
		src := []string{one, two}[i%2]
		push(t, r, "acme/web/site:v1", src)
		want, _ := os.ReadFile(filepath.Join(src, "f"))
		// The promise is a second; the test waits for the change, it does
		// not time it (a loaded machine is slower).
		opmtest.Eventually(t, fmt.Sprintf("round %d: the moved tag to show", i), func() error {
			if got, err := os.ReadFile(filepath.Join(mnt, "acme/web/site/v1/f")); err != nil || !bytes.Equal(got, want) {
				return fmt.Errorf("v1/f is %q (%v), want %q", got, err, want)
			}
			return nil
		})
	}
	// The readers stop before the tag goes: d/g is meant to vanish then.
	close(stop)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if _, err := r.Remove(ctx, mustRef(t, "acme/web/site:v1")); err != nil {
		t.Fatal(err)
	}
	opmtest.Eventually(t, "the removed tag to go from the mount", func() error {
		if _, err := os.Stat(filepath.Join(mnt, "acme/web/site/v1")); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("stat: %v, want no such file", err)
		}
		return nil
	})
	// Round 0 pushes what v1 holds already: no commit, so 5 moves.
	if st := m.Status(); st.HeadMoves != 5 || st.Errors != 0 {
		t.Errorf("status: %+v", st)
	}
}

// A blob missing from the local store (and no bucket to fetch it from)
// gives EIO for that file alone: on open, or with NoOpen on read.
func TestMissingBlobEIO(t *testing.T) {
	for _, noOpen := range []bool{false, true} {
		t.Run(map[bool]string{false: "open", true: "noopen"}[noOpen], func(t *testing.T) {
			src := opmtest.WriteTree(t, map[string]string{"gone": "this blob goes away\n", "kept": "kept\n"})
			var gone string
			_, m, mnt := mountOpts(t, opmfs.Options{NoOpen: noOpen, NoOverlay: true}, func(r *registry.Registry) {
				push(t, r, "acme/web/site:v1", src)
				p, err := r.Resolve(mustRef(t, "acme/web/site:v1"))
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range p.Manifest.Files() {
					if f.Path == "gone" {
						gone = r.LocalPath(f.Digest)
					}
				}
			})
			if err := os.Remove(gone); err != nil {
				t.Fatal(err)
			}
			if _, err := os.ReadFile(filepath.Join(mnt, "acme/web/site/v1/gone")); !errors.Is(err, syscall.EIO) {
				t.Errorf("read of a missing blob: %v, want EIO", err)
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "acme/web/site/v1/kept")); err != nil || string(b) != "kept\n" {
				t.Errorf("kept: %q %v", b, err)
			}
			if st := m.Status(); st.Errors == 0 {
				t.Errorf("status counts no error: %+v", st)
			}
		})
	}
}
