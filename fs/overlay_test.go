package opmfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

// overlaySource writes a tree with what a metadata tree must carry: files
// of several sizes and modes with their own times, an empty file, a
// symbolic link and nested directories.
func overlaySource(t *testing.T, big string) string {
	t.Helper()
	src := opmtest.WriteTree(t, map[string]string{"a.txt": "alpha\n", "bin/tool": "#!/bin/sh\necho hi\n", "sub/deep/big": big, "sub/empty": ""})
	if err := os.Chmod(filepath.Join(src, "bin/tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../a.txt", filepath.Join(src, "sub/link")); err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"a.txt", "bin/tool", "sub/deep/big", "sub/empty"} {
		when := time.Date(2020, 1, 2, 3, 4, 5, 600+i, time.UTC)
		if err := os.Chtimes(filepath.Join(src, p), when, when); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// sameTree compares what pkg shows with the tree at src: names, kinds,
// modes, sizes, file times, link targets and content.
func sameTree(t *testing.T, src, pkg string) {
	t.Helper()
	for _, p := range []string{"a.txt", "bin/tool", "sub/deep/big", "sub/empty", "sub/link"} {
		want, err := os.Lstat(filepath.Join(src, p))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.Lstat(filepath.Join(pkg, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if got.Mode() != want.Mode() || (got.Size() != want.Size()) || (!got.ModTime().Equal(want.ModTime()) && want.Mode().IsRegular()) {
			t.Errorf("%s: %v %d %v, want %v %d %v", p, got.Mode(), got.Size(), got.ModTime(), want.Mode(), want.Size(), want.ModTime())
		}
		if want.Mode()&os.ModeSymlink != 0 {
			l, err := os.Readlink(filepath.Join(pkg, p))
			if err != nil || l != "../a.txt" {
				t.Errorf("%s: link to %q, %v", p, l, err)
			}
			continue
		}
		a, _ := os.ReadFile(filepath.Join(src, p))
		b, err := os.ReadFile(filepath.Join(pkg, p))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: %d bytes, %v; want %d", p, len(b), err, len(a))
		}
	}
	// A directory's time is the newest of its files and links
	// (docs/design.md §6).
	var want time.Time
	for _, p := range []string{"sub/deep/big", "sub/empty", "sub/link"} {
		if fi, err := os.Lstat(filepath.Join(src, p)); err == nil && fi.ModTime().After(want) {
			want = fi.ModTime()
		}
	}
	st, err := os.Stat(filepath.Join(pkg, "sub"))
	if err != nil || !st.ModTime().Equal(want) || st.Mode() != os.ModeDir|0o755 {
		t.Errorf("sub: %v %v, want %v %v", st.Mode(), st.ModTime(), os.ModeDir|0o755, want)
	}
}

// TestOverlay: a package of the live head is served by a kernel overlay
// once looked up: the same names, modes, sizes, times, links and bytes as
// the tree pushed. When its tag moves, the next look finds the new package
// (overlaid in turn) while a file opened before keeps its content; the
// mount unmounts with its overlays in place. Both forms of metadata tree:
// EROFS images (the default where the kernel mounts them from files) and
// directories.
func TestOverlay(t *testing.T) {
	for _, form := range []string{"erofs", "directory"} {
		t.Run(form, func(t *testing.T) { testOverlay(t, form) })
	}
}

func testOverlay(t *testing.T, form string) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	src := overlaySource(t, big)
	opts := opmfs.DefaultOptions()
	opts.NoMetaImage = form == "directory"
	r, _, mnt := mountOpts(t, opts, func(r *registry.Registry) { push(t, r, "acme/web/site:v1", src) })
	pkg := filepath.Join(mnt, "acme/web/site/v1")
	opmtest.RequireReadPath(t, mnt, pkg, "overlay")
	if st, err := opmfs.ReadStatus(mnt); err != nil || st.Overlay.Metadata != form {
		opmtest.Unavailable(t, "metadata trees are %q here, not %s (%v)", st.Overlay.Metadata, form, err)
	}
	sameTree(t, src, pkg)

	old, err := os.Open(filepath.Join(pkg, "sub/deep/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := os.WriteFile(filepath.Join(src, "sub/deep/big"), []byte("new content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	push(t, r, "acme/web/site:v1", src)
	opmtest.Eventually(t, "the moved tag's new content to show", func() error {
		if b, err := os.ReadFile(filepath.Join(pkg, "sub/deep/big")); err != nil || string(b) != "new content\n" {
			return fmt.Errorf("sub/deep/big: %d bytes, %v", len(b), err)
		}
		return nil
	})
	opmtest.RequireReadPath(t, mnt, pkg, "overlay")
	b := make([]byte, len(big)+1)
	if n, err := old.ReadAt(b, 0); n != len(big) || string(b[:n]) != big {
		t.Errorf("the file opened before the move reads %d bytes (%v), want its old %d", n, err, len(big))
	}
	st, err := opmfs.ReadStatus(mnt)
	if err != nil || st.ReadPath != "overlay" || st.Overlay.Mounted != 1 || st.Overlay.Mounts != 2 || st.Overlay.Failed != 0 {
		t.Errorf("status %+v, %v: want one overlay mounted now, two since the start", st.Overlay, err)
	}
}

// TestOverlayFetches: a blob that is not local is read through the
// overlay's last data layer, the mount's .opm/blobs, which fetches it from
// the bucket; one that is nowhere fails the open, and the mount lives on.
func TestOverlayFetches(t *testing.T) {
	opmtest.RequireFUSE(t)
	r := bucketHome(t)
	src := overlaySource(t, "big enough\n")
	push(t, r, "acme/web/site:v1", src)
	p, err := r.Resolve(mustRef(t, "acme/web/site:v1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range p.Manifest.Files() {
		if f.Size > 0 {
			if err := os.Remove(r.LocalPath(f.Digest)); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, mnt := mountHome(t, r, opmfs.DefaultOptions())
	pkg := filepath.Join(mnt, "acme/web/site/v1")
	opmtest.RequireReadPath(t, mnt, pkg, "overlay")
	sameTree(t, src, pkg)
	fetched := 0
	for _, f := range p.Manifest.Files() {
		if f.Size > 0 && r.HasLocal(f.Digest) {
			fetched++
		}
	}
	if fetched != 3 || r.Fetches() < 3 {
		t.Errorf("%d of 3 blobs local after reading them (%d fetches)", fetched, r.Fetches())
	}
}

// TestOverlayMissingBlob: a file whose blob is in no store fails to open
// through the overlay with an error, not a hang, and the rest of the
// package reads.
func TestOverlayMissingBlob(t *testing.T) {
	src := opmtest.WriteTree(t, map[string]string{"gone": "nowhere\n", "here": "here\n"})
	r, _, mnt := mountOpts(t, opmfs.DefaultOptions(), func(r *registry.Registry) { push(t, r, "acme/web/site:v1", src) })
	p, err := r.Resolve(mustRef(t, "acme/web/site:v1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range p.Manifest.Files() {
		if f.Path == "gone" {
			os.Remove(r.LocalPath(f.Digest))
		}
	}
	pkg := filepath.Join(mnt, "acme/web/site/v1")
	opmtest.RequireReadPath(t, mnt, pkg, "overlay")
	_, err = os.ReadFile(filepath.Join(pkg, "gone"))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("read of a blob in no store: %v, want EIO (as through FUSE)", err)
	}
	if b, err := os.ReadFile(filepath.Join(pkg, "here")); err != nil || string(b) != "here\n" {
		t.Errorf("here: %q %v", b, err)
	}
}

// TestOverlayOff: NoOverlay serves everything through FUSE, and says so.
func TestOverlayOff(t *testing.T) {
	src := opmtest.WriteTree(t, map[string]string{"a": "a\n"})
	opts := opmfs.DefaultOptions()
	opts.NoOverlay = true
	_, _, mnt := mountOpts(t, opts, func(r *registry.Registry) { push(t, r, "acme/web/site:v1", src) })
	opmtest.RequireReadPath(t, mnt, filepath.Join(mnt, "acme/web/site/v1"), "fuse")
	if st, err := opmfs.ReadStatus(mnt); err != nil || st.ReadPath != "fuse" || st.Overlay.Off == "" {
		t.Errorf("status %+v %v", st, err)
	}
}

// TestOverlayCleansUp: a metadata tree left half written by a mount that
// died is removed when the next mount starts.
func TestOverlayCleansUp(t *testing.T) {
	opmtest.RequireFUSE(t)
	r, err := registry.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	left := filepath.Join(r.Paths().MountTmp(), "v1-dead.123.456")
	if err := os.MkdirAll(filepath.Join(left, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, mnt := mountHome(t, r, opmfs.DefaultOptions())
	if st, _ := opmfs.ReadStatus(mnt); st.Overlay.Off != "" {
		opmtest.Unavailable(t, "no kernel overlay: %s", st.Overlay.Off)
	}
	opmtest.Eventually(t, "the half-written metadata tree to be removed", func() error {
		if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %v, want no such file", left, err)
		}
		return nil
	})
}

// TestOverlayOnlyWhenLookedInto: stat of package directories (ls -l of a
// repository) asks for no overlay; the first look inside one covers that
// one alone.
func TestOverlayOnlyWhenLookedInto(t *testing.T) {
	src := opmtest.WriteTree(t, map[string]string{"a": "a\n"})
	_, m, mnt := mountOpts(t, opmfs.DefaultOptions(), func(r *registry.Registry) {
		push(t, r, "acme/web/site:v1", src)
		push(t, r, "acme/web/site:v2", src)
	})
	if st, _ := opmfs.ReadStatus(mnt); st.Overlay.Off != "" {
		opmtest.Unavailable(t, "no kernel overlay: %s", st.Overlay.Off)
	}
	for _, tag := range []string{"v1", "v2"} {
		if _, err := os.Lstat(filepath.Join(mnt, "acme/web/site", tag)); err != nil {
			t.Fatal(err)
		}
	}
	// Asked of the mount itself, not of .opm/status: the kernel may serve
	// a read of that from the one above if it is within the same clock
	// tick, which would show no overlay whatever the stats asked for. (An
	// overlay is asked for within the lookup, before the stat returns.)
	if st := m.Status(); st.Overlay.Pending+st.Overlay.Mounts != 0 {
		t.Fatalf("after stat of two package directories: %+v; want no overlay asked for", st.Overlay)
	}
	opmtest.RequireReadPath(t, mnt, filepath.Join(mnt, "acme/web/site/v1"), "overlay")
	if st, err := opmfs.ReadStatus(mnt); err != nil || st.Overlay.Mounts != 1 || st.Overlay.Mounted != 1 {
		t.Errorf("after a look into one: %+v, %v; want that one covered", st.Overlay, err)
	}
}
