package erofs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openpm/opm/internal/opmtest"
)

// mountImage writes im to a file, mounts it with Mount and attaches it
// at a directory, which it returns.
func mountImage(t *testing.T, im *Image) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "meta.erofs")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// erofs-utils' checker (make deps installs it) reads every inode and
	// directory as the format defines them. Without it the test is
	// Unavailable: a failure in CI, not a silent skip of the check.
	if _, err := exec.LookPath("fsck.erofs"); err != nil {
		opmtest.Unavailable(t, "no fsck.erofs (Debian package erofs-utils): %v", err)
	}
	if out, err := exec.Command("fsck.erofs", "--extract", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs: %v\n%s", err, out)
	}
	if os.Geteuid() != 0 {
		opmtest.Unavailable(t, "mounting EROFS needs root")
	}
	mfd, err := Mount(img)
	if err != nil {
		opmtest.Unavailable(t, "this kernel mounts no EROFS image from a file: %v", err)
	}
	defer unix.Close(mfd)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, mnt, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// TestImage: what an image holds is what the kernel shows: names in
// directories of one and of several blocks, modes, sizes (holes), times to
// the nanosecond, link targets verbatim, extended attributes.
func TestImage(t *testing.T) {
	t0 := time.Unix(1767225600, 123456789)
	im := New(0o755, t0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(im.Dir("lib", 0o750, t0.Add(time.Second)))
	must(im.File("lib/a.py", 0o644, 12345, t0.Add(2*time.Second),
		Xattr{"trusted.overlay.metacopy", nil},
		Xattr{"trusted.overlay.redirect", []byte("/ab/" + string(bytes.Repeat([]byte("ab"), 32)))},
		Xattr{"user.opm.digest", []byte("sha256:abc")}))
	must(im.File("lib/empty", 0o600, 0, t0))
	must(im.File("big", 0o755, 20<<40, t0)) // 20 TiB: three chunks
	must(im.Symlink("abs", "/etc/passwd", t0))
	must(im.Symlink("lib/up", "../../outside", t0))
	must(im.Dir("many", 0o755, t0))
	var names []string
	for i := range 3000 { // about 20 blocks of entries
		name := fmt.Sprintf("file-%05d-%s", i, string(bytes.Repeat([]byte{'x'}, i%40)))
		names = append(names, name)
		must(im.File("many/"+name, 0o644, int64(i), t0.Add(time.Duration(i))))
	}
	names = append(names, "-first", "~last", "Ω")
	for _, n := range names[3000:] {
		must(im.File("many/"+n, 0o644, 1, t0))
	}
	mnt := mountImage(t, im)

	check := func(p string, mode os.FileMode, size int64, mtime time.Time) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(mnt, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode || (mode.IsRegular() && fi.Size() != size) || !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: %v %d %v, want %v %d %v", p, fi.Mode(), fi.Size(), fi.ModTime(), mode, size, mtime)
		}
	}
	check(".", os.ModeDir|0o755, 0, t0)
	check("lib", os.ModeDir|0o750, 0, t0.Add(time.Second))
	check("lib/a.py", 0o644, 12345, t0.Add(2*time.Second))
	check("lib/empty", 0o600, 0, t0)
	check("big", 0o755, 20<<40, t0)
	check("abs", os.ModeSymlink|0o777, 0, t0)
	for _, l := range [][2]string{{"abs", "/etc/passwd"}, {"lib/up", "../../outside"}} {
		if got, err := os.Readlink(filepath.Join(mnt, l[0])); err != nil || got != l[1] {
			t.Errorf("readlink %s = %q, %v; want %q", l[0], got, err, l[1])
		}
	}
	buf := make([]byte, 256)
	for name, want := range map[string]string{
		"trusted.overlay.metacopy": "",
		"trusted.overlay.redirect": "/ab/" + string(bytes.Repeat([]byte("ab"), 32)),
		"user.opm.digest":          "sha256:abc",
	} {
		n, err := unix.Lgetxattr(filepath.Join(mnt, "lib/a.py"), name, buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("xattr %s = %q, %v; want %q", name, buf[:max(n, 0)], err, want)
		}
	}
	if _, err := unix.Lgetxattr(filepath.Join(mnt, "lib/empty"), "trusted.overlay.metacopy", buf); err != unix.ENODATA {
		t.Errorf("lib/empty has a metacopy xattr: %v", err)
	}
	// A hole reads as zeros.
	if b, err := os.ReadFile(filepath.Join(mnt, "lib/a.py")); err != nil || len(b) != 12345 || !bytes.Equal(b, make([]byte, 12345)) {
		t.Errorf("lib/a.py: %d bytes, %v", len(b), err)
	}
	des, err := os.ReadDir(filepath.Join(mnt, "many"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Fatalf("many: %d names, want %d (first difference near %v)", len(got), len(names), firstDiff(got, names))
	}
	for i, n := range names { // lookups by name, through the binary search
		if i%97 != 0 && n[0] == 'f' {
			continue
		}
		if _, err := os.Lstat(filepath.Join(mnt, "many", n)); err != nil {
			t.Errorf("lookup %s: %v", n, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(mnt, "many", "file-00001")); !os.IsNotExist(err) {
		t.Errorf("lookup of a missing name: %v", err)
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] + " / " + b[i]
		}
	}
	return "the end"
}

// TestBadInput: names and attributes the format cannot hold are refused.
func TestBadInput(t *testing.T) {
	im := New(0o755, time.Unix(0, 0))
	for _, err := range []error{
		im.File("no/parent", 0o644, 1, time.Unix(0, 0)),
		im.File("../up", 0o644, 1, time.Unix(0, 0)),
		im.File("a//b", 0o644, 1, time.Unix(0, 0)),
		im.File("x", 0o644, -1, time.Unix(0, 0)),
		im.File("y", 0o644, 1, time.Unix(0, 0), Xattr{"security.selinux", nil}),
		im.Symlink("z", "", time.Unix(0, 0)),
	} {
		if err == nil {
			t.Error("accepted")
		}
	}
	if err := im.File("ok", 0o644, 1, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := im.File("ok", 0o644, 1, time.Unix(0, 0)); err == nil {
		t.Error("a name added twice was accepted")
	}
}

// TestRandomTrees: trees of random names (any bytes but NUL and '/', of
// every length up to 255), sizes, modes and times read back the same,
// whichever way directory blocks fall.
func TestRandomTrees(t *testing.T) {
	for seed := range 12 {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		t0 := time.Unix(1767225600, 0)
		im := New(0o755, t0)
		type want struct {
			dir        bool
			perm       uint32
			size       int64
			mtime      time.Time
			linkTarget string
		}
		wants := map[string]want{}
		dirs := []string{""}
		for i := range 50 + rng.IntN(2000) {
			parent := dirs[rng.IntN(len(dirs))]
			nb := make([]byte, 1+rng.IntN(255))
			for j := range nb {
				for nb[j] == 0 || nb[j] == '/' {
					nb[j] = byte(rng.IntN(256))
				}
			}
			name := string(nb)
			if name == "." || name == ".." {
				continue
			}
			p := name
			if parent != "" {
				p = parent + "/" + name
			}
			if _, dup := wants[p]; dup {
				continue
			}
			mt := t0.Add(time.Duration(rng.Int64N(int64(1000 * time.Hour))))
			var err error
			switch k := rng.IntN(10); {
			case k == 0:
				err = im.Dir(p, 0o755, mt)
				wants[p] = want{dir: true, perm: 0o755, mtime: mt}
				dirs = append(dirs, p)
			case k == 1:
				target := fmt.Sprintf("../t%d", i)
				err = im.Symlink(p, target, mt)
				wants[p] = want{perm: 0o777, mtime: mt, linkTarget: target}
			default:
				perm, size := uint32(0o600+rng.IntN(0o200)), rng.Int64N(1<<40)
				err = im.File(p, perm, size, mt, Xattr{"trusted.overlay.metacopy", nil})
				wants[p] = want{perm: perm, size: size, mtime: mt}
			}
			if err != nil {
				t.Fatalf("seed %d: %q: %v", seed, p, err)
			}
		}
		mnt := mountImage(t, im)
		seen := 0
		err := filepath.WalkDir(mnt, func(path string, d os.DirEntry, err error) error {
			if err != nil || path == mnt {
				return err
			}
			rel, _ := filepath.Rel(mnt, path)
			w, ok := wants[rel]
			if !ok {
				return fmt.Errorf("%q is not in the image", rel)
			}
			seen++
			fi, err := os.Lstat(path)
			if err != nil {
				return err
			}
			if fi.IsDir() != w.dir || uint32(fi.Mode().Perm()) != w.perm || !fi.ModTime().Equal(w.mtime) ||
				(fi.Mode().IsRegular() && fi.Size() != w.size) {
				return fmt.Errorf("%q: %v %d %v, want %+v", rel, fi.Mode(), fi.Size(), fi.ModTime(), w)
			}
			if w.linkTarget != "" {
				if l, err := os.Readlink(path); err != nil || l != w.linkTarget {
					return fmt.Errorf("%q: link %q %v, want %q", rel, l, err, w.linkTarget)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if seen != len(wants) {
			t.Fatalf("seed %d: %d names seen, %d added", seed, seen, len(wants))
		}
	}
}
