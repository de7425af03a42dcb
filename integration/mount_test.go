package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/openpm/opm/daemon"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
)

// opmOK runs opm on home with extra environment and fails the test if it
// fails.
func opmOK(t *testing.T, home string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(opmBin, args...)
	cmd.Env = append(append(os.Environ(), "OPM_HOME="+home), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("opm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mountDaemon runs `opm mount --daemon` on a new mount point and unmounts it
// (waiting for the daemon to let the home go) when the test ends.
func mountDaemon(t *testing.T, home string, env ...string) string {
	t.Helper()
	opmtest.RequireFUSE(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// Registered before the mount: a mount that fails half way (mounted,
	// then the command failed) goes too.
	t.Cleanup(func() { unmountAndWait(t, home, mnt) })
	opmOK(t, home, env, "mount", "--daemon", mnt)
	return mnt
}

// unmountAndWait detaches the mount at mnt (lazily: it goes even while a
// failed test left files open in it; not mounted is fine) and waits until
// its daemon has let the home go.
func unmountAndWait(t *testing.T, home, mnt string) {
	t.Helper()
	if err := opmfs.Unmount(mnt, true); err != nil && !errors.Is(err, syscall.EINVAL) {
		t.Logf("unmount %s: %v", mnt, err)
	}
	opmtest.Eventually(t, "the daemon of "+home+" to exit after the unmount of "+mnt, released(home))
}

// released is a condition for opmtest.Eventually: no daemon holds home.
func released(home string) func() error {
	return func() error {
		if daemon.Held(home) {
			return errors.New("a daemon still holds the home")
		}
		return nil
	}
}

// mountStatus reads the mount's .opm/status as of now (opmfs.ReadStatus).
func mountStatus(t *testing.T, mnt string) opmfs.Status {
	t.Helper()
	st, err := opmfs.ReadStatus(mnt)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// sh runs a bash script in dir and returns its combined output.
func sh(t *testing.T, dir, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func shOK(t *testing.T, dir, script string) string {
	t.Helper()
	out, err := sh(t, dir, script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

// sourceTree writes a package source: random files of several sizes in
// nested directories, an executable, an empty file and a symlink.
func sourceTree(t *testing.T, seed uint64) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]int64{
		"README.md": 1 << 10, "bin/tool": 64 << 10, "lib/a/one.so": 300 << 10, "lib/a/two.so": 7,
		"lib/b/big.dat": 5 << 20, "share/doc/x.txt": 100, "share/doc/y.txt": 4097,
	}
	for name, size := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeRandom(p, size, seed+uint64(len(name))); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.WriteFile(filepath.Join(src, "share/doc/needle.txt"), []byte("hay\nthe needle is here\nhay\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "empty"), nil, 0o644))
	must(t, os.Chmod(filepath.Join(src, "bin/tool"), 0o755))
	must(t, os.Symlink("a/one.so", filepath.Join(src, "lib/link.so")))
	return src
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type fileInfo struct {
	Path    string `json:"path"`
	Mode    string `json:"mode"`
	Size    int64  `json:"size"`
	Digest  string `json:"digest"`
	Symlink string `json:"symlink"`
}

func packageFiles(t *testing.T, home, ref string) []fileInfo {
	t.Helper()
	var files []fileInfo
	must(t, json.Unmarshal([]byte(opmOK(t, home, nil, "files", ref, "--json")), &files))
	return files
}

func TestMountShellTools(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	src := sourceTree(t, 1)
	opmOK(t, home, nil, "push", "acme/tools/kit:v1", src)
	mnt := mountDaemon(t, home, "OPM_FUSE_XATTR=1")
	pkg := filepath.Join(mnt, "acme/tools/kit/v1")

	out := shOK(t, mnt, "ls -R")
	for _, want := range []string{"acme/tools/kit/v1/share/doc:", "needle.txt", "big.dat"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls -R lacks %q:\n%s", want, out)
		}
	}
	got := shOK(t, pkg, "find . | sort")
	want := shOK(t, src, "find . | sort")
	if got != want {
		t.Errorf("find: got\n%s\nwant\n%s", got, want)
	}
	if out := shOK(t, pkg, "cat share/doc/needle.txt"); !strings.Contains(out, "the needle") {
		t.Errorf("cat: %q", out)
	}
	if out := shOK(t, mnt, "grep -r needle acme"); !strings.Contains(out, "acme/tools/kit/v1/share/doc/needle.txt:the needle is here") {
		t.Errorf("grep -r: %q", out)
	}
	shOK(t, mnt, "diff -r "+src+" acme/tools/kit/v1")
	cp := filepath.Join(t.TempDir(), "copy")
	shOK(t, mnt, "cp -r acme/tools/kit/v1 "+cp+" && diff -r "+src+" "+cp)

	// sha256sum of every file equals its layer digest; mode and size as pushed.
	for _, f := range packageFiles(t, home, "acme/tools/kit:v1") {
		if f.Symlink != "" {
			continue
		}
		sum := shOK(t, pkg, "sha256sum "+f.Path)
		if "sha256:"+strings.Fields(sum)[0] != f.Digest {
			t.Errorf("%s: sha256sum %s, digest %s", f.Path, sum, f.Digest)
		}
		fi, err := os.Stat(filepath.Join(pkg, f.Path))
		if err != nil || fi.Size() != f.Size || fmt.Sprintf("%04o", fi.Mode().Perm()) != f.Mode {
			t.Errorf("%s: stat %v %v, want size %d mode %s", f.Path, fi, err, f.Size, f.Mode)
		}
		buf := make([]byte, 100)
		n, err := syscall.Getxattr(filepath.Join(pkg, f.Path), opmfs.DigestXattr, buf)
		if err != nil || string(buf[:n]) != f.Digest {
			t.Errorf("%s: xattr %q %v", f.Path, buf[:n], err)
		}
	}
	if target, err := os.Readlink(filepath.Join(pkg, "lib/link.so")); err != nil || target != "a/one.so" {
		t.Errorf("readlink: %q %v", target, err)
	}
	// Inode numbers are stable across lookups.
	var a, b syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(pkg, "lib/b/big.dat"), &a))
	shOK(t, mnt, "echo 2 > /proc/sys/vm/drop_caches || true") // forget dentries and inodes
	must(t, syscall.Stat(filepath.Join(pkg, "lib/b/big.dat"), &b))
	if a.Ino != b.Ino {
		t.Errorf("inode changed: %d then %d", a.Ino, b.Ino)
	}
	posixtest.ReadDirConsistency(t, mnt)
	posixtest.ReadDirConsistency(t, filepath.Join(mnt, "acme/tools/kit"))
	posixtest.ReadDirConsistency(t, filepath.Join(pkg, "lib"))
}

func TestMountReadOnly(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	src := sourceTree(t, 2)
	opmOK(t, home, nil, "push", "acme/tools/kit:v1", src)
	mnt := mountDaemon(t, home)
	for _, cmd := range []string{
		"touch new", "echo x > README.md", "echo x >> README.md", "truncate -s 0 README.md",
		"mkdir d", "rm README.md", "rmdir share/doc/", "rm -r share", "mv README.md R", "chmod 777 README.md",
		"ln -s README.md l", "ln README.md h", "mkfifo f", "rmdir ../v1", "mkdir ../../newrepo", "mkdir /proc/self/cwd/../../../../x",
	} {
		out, err := sh(t, filepath.Join(mnt, "acme/tools/kit/v1"), cmd)
		if err == nil || !strings.Contains(out, "Read-only file system") {
			t.Errorf("%s: err %v, output %q; want EROFS", cmd, err, out)
		}
	}
	err := syscall.Setxattr(filepath.Join(mnt, "acme/tools/kit/v1/README.md"), "user.x", []byte("y"), 0)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("setxattr: %v, want EROFS", err)
	}
	shOK(t, mnt, "diff -r "+src+" acme/tools/kit/v1")
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// appears is a condition for opmtest.Eventually: p exists. (The mount
// promises that a change shows within a second; the tests wait for it,
// they do not time it.)
func appears(p string) func() error {
	return func() error {
		_, err := os.Lstat(p)
		return err
	}
}

// disappears is a condition for opmtest.Eventually: p no longer exists.
func disappears(p string) func() error {
	return func() error {
		if exists(p) {
			return fmt.Errorf("%s is still there", p)
		}
		return nil
	}
}

func TestMountLiveUpdate(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	work := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(work, "one"), 0o755))
	must(t, os.WriteFile(filepath.Join(work, "one/f.txt"), []byte("first\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(work, "two"), 0o755))
	must(t, os.WriteFile(filepath.Join(work, "two/f.txt"), []byte("second\n"), 0o644))
	opmOK(t, home, nil, "push", "acme/web/site:v1", filepath.Join(work, "one"))
	mnt := mountDaemon(t, home)
	repo := filepath.Join(mnt, "acme/web/site")
	if got := shOK(t, repo, "ls"); got != "v1\n" {
		t.Fatalf("ls: %q", got)
	}
	before := mountStatus(t, mnt).Commands

	// A push from another directory with a relative path, routed through
	// the daemon with the client's environment.
	cmd := exec.Command(opmBin, "push", "acme/web/site:v2", "two")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "OPM_HOME="+home, "GIT_AUTHOR_NAME=Routed Author", "GIT_AUTHOR_EMAIL=routed@example.org")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("push through the daemon: %v\n%s", err, out)
	}
	opmtest.Eventually(t, "v2 to appear in the mount", appears(filepath.Join(repo, "v2/f.txt")))
	if st := mountStatus(t, mnt); st.Commands != before+1 {
		t.Errorf("daemon served %d commands, want %d: the push did not go through the socket", st.Commands, before+1)
	}
	if out := opmOK(t, home, nil, "log", "acme/web/site:v2"); !strings.Contains(out, "Routed Author") {
		t.Errorf("log does not show the client's author:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(repo, "v2/f.txt")); string(b) != "second\n" {
		t.Errorf("v2/f.txt: %q", b)
	}

	// A file opened before its tag moves keeps reading what it opened.
	f, err := os.Open(filepath.Join(repo, "v1/f.txt"))
	must(t, err)
	defer f.Close()
	opmOK(t, home, nil, "push", "acme/web/site:v1", filepath.Join(work, "two"))
	opmtest.Eventually(t, "v1 to move in the mount", func() error {
		if b, err := os.ReadFile(filepath.Join(repo, "v1/f.txt")); err != nil || string(b) != "second\n" {
			return fmt.Errorf("v1/f.txt: %q, %v", b, err)
		}
		return nil
	})
	old := make([]byte, 100)
	n, _ := f.ReadAt(old, 0)
	if string(old[:n]) != "first\n" {
		t.Errorf("open file reads %q after its tag moved, want the content it opened", old[:n])
	}

	// rm disappears.
	opmOK(t, home, nil, "rm", "acme/web/site:v2")
	opmtest.Eventually(t, "v2 to disappear from the mount", disappears(filepath.Join(repo, "v2")))
	if got := shOK(t, repo, "ls"); got != "v1\n" {
		t.Errorf("ls after rm: %q", got)
	}
	// A new repository appears in a listed project.
	opmOK(t, home, nil, "push", "acme/web/api:v1", filepath.Join(work, "one"))
	opmtest.Eventually(t, "the new repository to appear in the mount", appears(filepath.Join(mnt, "acme/web/api/v1/f.txt")))
}

func TestMountDigestAndHistory(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	src := sourceTree(t, 3)
	digest := strings.TrimSpace(opmOK(t, home, nil, "push", "acme/tools/kit:v1", src))
	mnt := mountDaemon(t, home)
	first := mountStatus(t, mnt).Head
	opmOK(t, home, nil, "rm", "acme/tools/kit:v1")
	opmtest.Eventually(t, "v1 to disappear from the mount", disappears(filepath.Join(mnt, "acme/tools/kit/v1")))

	// By digest: only while a tag names it, lookup only.
	opmOK(t, home, nil, "tag", "--help")
	for _, p := range []string{
		".history/" + first + "/acme/tools/kit/v1",
		".history/" + first[:7] + "/acme/tools/kit/v1",
		".history/" + first[:12] + "/acme/tools/kit/@" + digest,
	} {
		shOK(t, mnt, "diff -r "+src+" "+p)
	}
	if out, _ := sh(t, mnt, "ls .history"); out != "" {
		t.Errorf("ls .history lists %q; it is lookup only", out)
	}
	if exists(filepath.Join(mnt, ".history/0000000")) || exists(filepath.Join(mnt, ".history/abc")) {
		t.Error("a bad commit resolves")
	}
	opmOK(t, home, nil, "push", "acme/tools/kit:v2", src)
	opmtest.Eventually(t, "v2 to appear in the mount", appears(filepath.Join(mnt, "acme/tools/kit/v2")))
	shOK(t, mnt, "diff -r "+src+" acme/tools/kit/@"+digest)
	if out := shOK(t, mnt, "ls acme/tools/kit"); out != "v2\n" {
		t.Errorf("ls lists %q; @sha256 entries are lookup only", out)
	}
}

func TestMountCorruptBucketBlob(t *testing.T) {
	// With no-open (the default) the fetch (and its EIO) happens on read.
	// Through FUSE alone: the overlay's reads of .opm/blobs are TestOverlayFetches'.
	for _, env := range []string{"OPM_FUSE_NOOPEN=0", "OPM_FUSE_NOOPEN=1"} {
		t.Run(env, func(t *testing.T) { testMountCorruptBucketBlob(t, env) })
	}
}

func testMountCorruptBucketBlob(t *testing.T, env string) {
	home := filepath.Join(t.TempDir(), "home")
	bucket := filepath.Join(t.TempDir(), "bucket")
	must(t, os.MkdirAll(bucket, 0o755))
	opmOK(t, home, nil, "config", "opm.blobs", "file://"+bucket)
	src := sourceTree(t, 4)
	opmOK(t, home, nil, "push", "acme/tools/kit:v1", src)
	files := packageFiles(t, home, "acme/tools/kit:v1")
	var bad, fetched fileInfo
	for _, f := range files {
		switch f.Path {
		case "lib/a/one.so":
			bad = f
		case "lib/b/big.dat":
			fetched = f
		}
	}
	// Both only in the bucket; one of them corrupt there.
	for _, f := range []fileInfo{bad, fetched} {
		hexd := strings.TrimPrefix(f.Digest, "sha256:")
		must(t, os.Remove(filepath.Join(home, "blobs/sha256", hexd[:2], hexd)))
	}
	obj := filepath.Join(bucket, "blobs/sha256", strings.TrimPrefix(bad.Digest, "sha256:"))
	b, err := os.ReadFile(obj)
	must(t, err)
	b[len(b)/2] ^= 1
	must(t, os.WriteFile(obj, b, 0o644))

	mnt := mountDaemon(t, home, env, "OPM_OVERLAY=0")
	pkg := filepath.Join(mnt, "acme/tools/kit/v1")
	// Listing and stat never fetch.
	shOK(t, pkg, "ls -lR >/dev/null")
	if st := mountStatus(t, mnt); st.Fetches != 0 {
		t.Errorf("listing fetched %d blobs", st.Fetches)
	}
	out, err := sh(t, pkg, "cat lib/a/one.so > /dev/null")
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Errorf("corrupt blob: err %v, output %q; want EIO", err, out)
	}
	// Everything else still reads, including a blob fetched on open.
	for _, f := range files {
		if f.Path == bad.Path || f.Symlink != "" {
			continue
		}
		if sum := shOK(t, pkg, "sha256sum "+f.Path); "sha256:"+strings.Fields(sum)[0] != f.Digest {
			t.Errorf("%s: %s", f.Path, sum)
		}
	}
	st := mountStatus(t, mnt)
	if st.Errors < 1 || st.Fetches < 2 {
		t.Errorf("status: %d errors, %d fetches; want ≥1 and ≥2", st.Errors, st.Fetches)
	}
	if log, _ := os.ReadFile(filepath.Join(home, "opm.log")); !bytes.Contains(log, []byte("lib/a/one.so")) {
		t.Errorf("the failure is not logged:\n%s", log)
	}
}

// TestMountPassthroughAndPlain: the FUSE tree's three ways of reading a
// file (the tuning knobs of docs/mount.md) give the same bytes: no-open (the
// default), open with passthrough, open with reads served by the daemon.
func TestMountPassthroughAndPlain(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	src := sourceTree(t, 5)
	opmOK(t, home, nil, "push", "acme/tools/kit:v1", src)
	want := sha256File(t, filepath.Join(src, "lib/b/big.dat"))
	for _, c := range []struct {
		name        string
		env         []string
		passthrough bool
	}{
		{"noopen", nil, false},
		{"passthrough", []string{"OPM_FUSE_NOOPEN=0"}, true},
		{"plain", []string{"OPM_FUSE_NOOPEN=0", "OPM_FUSE_PASSTHROUGH=0"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			mnt := mountDaemon(t, home, append(c.env, "OPM_OVERLAY=0")...)
			st := mountStatus(t, mnt)
			if st.Passthrough != c.passthrough {
				if c.passthrough {
					opmtest.Unavailable(t, "the kernel refused FUSE passthrough (it needs root and Linux 6.9)")
				}
				t.Errorf("passthrough %v, want %v", st.Passthrough, c.passthrough)
			}
			if got := sha256File(t, filepath.Join(mnt, "acme/tools/kit/v1/lib/b/big.dat")); got != want {
				t.Errorf("sha256 %s, want %s", got, want)
			}
			shOK(t, mnt, "diff -r "+src+" acme/tools/kit/v1")
		})
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestMountKillRecover(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	src := sourceTree(t, 6)
	opmOK(t, home, nil, "push", "acme/tools/kit:v1", src)
	mnt := mountDaemon(t, home)

	// A second daemon on the home is refused, naming the first.
	st := mountStatus(t, mnt)
	cmd := exec.Command(opmBin, "mount", t.TempDir())
	cmd.Env = append(os.Environ(), "OPM_HOME="+home)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(string(out), fmt.Sprintf("pid %d mounted at %s", st.PID, mnt)) {
		t.Errorf("second mount: %v %q; want exit 7 naming pid %d and %s", err, out, st.PID, mnt)
	}

	must(t, syscall.Kill(st.PID, syscall.SIGKILL))
	// The kernel notices when the daemon's /dev/fuse is closed; statfs
	// then fails with ENOTCONN (stat may answer from cached attributes).
	opmtest.Eventually(t, "the mount to be dead after SIGKILL of its daemon", func() error {
		if !opmfs.Dead(mnt) {
			var sfs syscall.Statfs_t
			return fmt.Errorf("statfs %v, want ENOTCONN", syscall.Statfs(mnt, &sfs))
		}
		return nil
	})
	// With the daemon dead, commands run on their own (the stale socket is
	// removed) and the next mount recovers the mount point.
	if out := opmOK(t, home, nil, "ls", "acme/tools/kit"); !strings.HasPrefix(out, "v1 ") {
		t.Errorf("ls: %q", out)
	}
	if exists(filepath.Join(home, "opm.sock")) {
		t.Error("stale socket left")
	}
	opmOK(t, home, nil, "mount", "--daemon", mnt)
	shOK(t, mnt, "diff -r "+src+" acme/tools/kit/v1")
}

// TestMountForeground runs `opm mount` in the foreground and stops it with
// SIGTERM.
func TestMountForeground(t *testing.T) {
	opmtest.RequireFUSE(t)
	home := filepath.Join(t.TempDir(), "home")
	src := sourceTree(t, 7)
	opmOK(t, home, nil, "push", "acme/tools/kit:v1", src)
	mnt := t.TempDir()
	cmd := exec.Command(opmBin, "mount", mnt)
	cmd.Env = append(os.Environ(), "OPM_HOME="+home)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	must(t, cmd.Start())
	t.Cleanup(func() {
		// A test that failed before SIGTERM leaves opm mount running:
		// it goes, and its mount with it.
		cmd.Process.Kill()
		cmd.Wait()
		unmountAndWait(t, home, mnt)
	})
	if err := opmtest.Wait("opm mount to mount "+mnt, appears(filepath.Join(mnt, "acme"))); err != nil {
		cmd.Process.Kill()
		cmd.Wait() // its log is complete only then
		t.Fatalf("%v\nopm mount says:\n%s", err, logs.String())
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil {
		t.Errorf("opm mount after SIGTERM: %v\n%s", err, logs.String())
	}
	if exists(filepath.Join(mnt, "acme")) || exists(filepath.Join(home, "opm.sock")) {
		t.Error("still mounted or socket left after SIGTERM")
	}
}

// TestMountScripts runs the testscript scenarios testdata/mount/mount_*.txtar
// with a mount point at $MNT that is unmounted when the script ends.
func TestMountScripts(t *testing.T) {
	opmtest.RequireFUSE(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/mount",
		Setup: func(env *testscript.Env) error {
			scriptEnv(env)
			mnt, home := filepath.Join(env.WorkDir, "mnt"), env.Getenv("OPM_HOME")
			env.Setenv("MNT", mnt)
			env.Defer(func() {
				// Lazily, whatever the script left open; then the daemon
				// must let the home go before its directory is removed.
				opmfs.Unmount(mnt, true)
				if err := opmtest.Wait("the daemon of "+home+" to exit after the unmount of "+mnt, released(home)); err != nil {
					env.T().Fatal(err)
				}
			})
			return os.Mkdir(mnt, 0o755)
		},
		Cmds: scriptCmds,
	})
}
