package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
)

// TestLogOfAMisspeltName: opm log of a name no change ever touched fails
// (not found, exit 3) in one line suggesting the nearest existing name,
// instead of printing nothing with exit 0; a removed tag still has its
// history.
func TestLogOfAMisspeltName(t *testing.T) {
	home := t.TempDir()
	src := pkgDir(t, 91, 1, 100)
	mustOpm(t, home, "push", "acme/web/site:v1.0", src)
	mustOpm(t, home, "push", "acme/web/site:gone", src)
	mustOpm(t, home, "rm", "acme/web/site:gone")
	for _, c := range []struct{ name, hint string }{
		{"acme/web/sitee", "did you mean acme/web/site?"},
		{"acme/web/site:v1.1", "did you mean acme/web/site:v1.0?"},
		{"acme/wbe", "did you mean acme/web?"},
		{"acme/web/sitee:v1.0", "did you mean acme/web/site?"},
		{"nothing/like/it", "no change of the registry's history names it"},
	} {
		r := syncOpm(t, home, "log", c.name)
		wantCode(t, r, 3, c.hint)
		if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stdout != "" {
			t.Errorf("opm log %s: stdout %q, stderr %q; want one line on stderr only", c.name, r.stdout, r.stderr)
		}
	}
	if out := mustOpm(t, home, "log", "acme/web/site:gone").stdout; !strings.Contains(out, "rm acme/web/site:gone") {
		t.Errorf("opm log of a removed tag: %q, want its history", out)
	}
}

// TestRemoteAddNotARepository: opm remote add refuses a metadata path that
// is not a git repository (or not there) in one line saying how to make
// one, and adds nothing; an empty bare repository is fine.
func TestRemoteAddNotARepository(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	bucket := "file://" + dir + "/blobs?create_dir=1"
	must(t, os.Mkdir(filepath.Join(dir, "plain"), 0o755))
	for _, meta := range []string{filepath.Join(dir, "plain"), filepath.Join(dir, "missing")} {
		r := syncOpm(t, home, "remote", "add", "origin", "--meta", meta, "--blobs", bucket)
		wantCode(t, r, 3, "is not a git repository (make one with git init --bare)")
		if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("remote add %s: more than one line:\n%s", meta, r.stderr)
		}
	}
	if out := mustOpm(t, home, "remote", "ls").stdout; strings.Contains(out, "origin") {
		t.Fatalf("a refused remote was added:\n%s", out)
	}
	git(t, "init", "-q", "--bare", filepath.Join(dir, "meta.git"))
	mustOpm(t, home, "remote", "add", "origin", "--meta", filepath.Join(dir, "meta.git"), "--blobs", bucket)
}

// TestMountRefusesBadMountpoints: opm mount on a regular file or a missing
// directory fails in one line saying what to do, before anything is
// mounted, in the foreground and with --daemon; on a directory that is not
// empty it mounts and warns that the entries are hidden. (A regular file
// used to get a dead FUSE mount; a missing directory "fusermount exited
// with code 256; ".)
func TestMountRefusesBadMountpoints(t *testing.T) {
	opmtest.RequireFUSE(t)
	home, dir := t.TempDir(), t.TempDir()
	file := filepath.Join(dir, "file")
	must(t, os.WriteFile(file, []byte("x"), 0o644))
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		at, hint string
		code     int
	}{
		{file, "not a directory; opm mounts on an empty directory", 2},
		{missing, "no such directory; create it first: mkdir -p " + missing, 3},
	} {
		for _, daemon := range []bool{false, true} {
			args := []string{"mount", c.at}
			if daemon {
				args = append(args, "--daemon")
			}
			t.Cleanup(func() { opmfs.Unmount(c.at, true) })
			r := syncOpm(t, home, args...)
			wantCode(t, r, c.code, c.hint)
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("opm %s: more than one line:\n%s", strings.Join(args, " "), r.stderr)
			}
			if h, mounted := opmfs.MountedHome(c.at); mounted {
				t.Errorf("opm %s: failed, but left a mount of %s there", strings.Join(args, " "), h)
			}
		}
	}

	full := filepath.Join(dir, "full")
	must(t, os.MkdirAll(filepath.Join(full, "a"), 0o755))
	must(t, os.WriteFile(filepath.Join(full, "b"), nil, 0o644))
	t.Cleanup(func() { unmountAndWait(t, home, full) })
	r := mustOpm(t, home, "mount", "--daemon", full)
	if !strings.Contains(r.stderr, "warning: "+full+" is not empty: its 2 entries are hidden while the registry is mounted there") {
		t.Errorf("mount on a directory that is not empty: no warning:\n%s", r.stderr)
	}
	if _, mounted := opmfs.MountedHome(full); !mounted {
		t.Error("not mounted")
	}
}

// TestSyncSaysWhatToDo: opm sync --prefetch with a selector that matches no
// tag says so (it used to print "prefetched 0 blob(s)" or nothing); a plain
// opm sync SRC DST over a filtered mirror says it is one and how to go on
// (it used to suspect someone pushed to the mirror).
func TestSyncSaysWhatToDo(t *testing.T) {
	home, follower, dir := t.TempDir(), t.TempDir(), t.TempDir()
	git(t, "init", "-q", "--bare", filepath.Join(dir, "origin.git"))
	git(t, "init", "-q", "--bare", filepath.Join(dir, "mirror.git"))
	mustOpm(t, home, "remote", "add", "origin", "--meta", filepath.Join(dir, "origin.git"), "--blobs", "file://"+dir+"/ob?create_dir=1")
	mustOpm(t, home, "remote", "add", "mirror", "--meta", filepath.Join(dir, "mirror.git"), "--blobs", "file://"+dir+"/mb?create_dir=1")
	src := pkgDir(t, 7, 1, 100)
	mustOpm(t, home, "push", "acme/web/site:v1", src)
	mustOpm(t, home, "push", "acme/tools/cli:v1", src)

	mustOpm(t, follower, "remote", "add", "origin", "--meta", filepath.Join(dir, "origin.git"), "--blobs", "file://"+dir+"/ob")
	if r := mustOpm(t, follower, "sync", "--prefetch", "zz/*"); !strings.Contains(r.stderr, "no tag matches zz/*: nothing prefetched") {
		t.Errorf("prefetch of a selector matching nothing: %q", r.stderr)
	}
	if r := mustOpm(t, follower, "sync", "--prefetch", "acme/web/*"); !strings.Contains(r.stderr, "prefetched 2 blob(s), 102 B of 1 tag(s)") {
		t.Errorf("prefetch: %q", r.stderr)
	}

	mustOpm(t, home, "sync", "origin", "mirror", "--include", "acme/web/*")
	r := syncOpm(t, home, "sync", "origin", "mirror")
	wantCode(t, r, 4, "mirror is a filtered mirror of origin")
	if !strings.Contains(r.stderr, "sync it again with the same --include/--exclude, or with --force") {
		t.Errorf("the refusal does not say what to do: %s", r.stderr)
	}
	mustOpm(t, home, "sync", "origin", "mirror", "--include", "acme/web/*")
}

// TestMisspeltNamesSuggest: every command that names a tag or a node says
// which level is missing and suggests the nearest existing name, in one
// line with exit 3 (they used to say "no such tag" of a misspelt
// repository, and suggest nothing).
func TestMisspeltNamesSuggest(t *testing.T) {
	home := t.TempDir()
	src := pkgDir(t, 92, 1, 10)
	mustOpm(t, home, "push", "acme/web/site:v1.0", src)
	out := filepath.Join(t.TempDir(), "out")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", "acme/web/sitee:v1.0", "-o", out}, "acme/web/sitee: no such repository; did you mean acme/web/site?"},
		{[]string{"pull", "acme/web/site:v1.1", "-o", out}, "acme/web/site:v1.1: no such tag; did you mean acme/web/site:v1.0?"},
		{[]string{"files", "acme/wbe/site:v1.0"}, "acme/wbe: no such project; did you mean acme/web?"},
		{[]string{"inspect", "acmee/web/site:v1.0"}, "acmee: no such namespace; did you mean acme?"},
		{[]string{"ls", "acme/web/stie"}, "acme/web/stie: no such repository; did you mean acme/web/site?"},
		{[]string{"ls", "acme/wev"}, "acme/wev: no such project; did you mean acme/web?"},
		{[]string{"tag", "acme/web/site:v1.00", "acme/web/site:stable"}, "acme/web/site:v1.00: no such tag; did you mean acme/web/site:v1.0?"},
		{[]string{"rm", "acme/web/site:v1.01"}, "acme/web/site:v1.01: no such tag; did you mean acme/web/site:v1.0?"},
		{[]string{"pull", "zzz/yyy/xxx:v1", "-o", out}, "zzz: no such namespace"},
	} {
		r := syncOpm(t, home, c.args...)
		wantCode(t, r, 3, c.want)
		if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("opm %s: more than one line:\n%s", strings.Join(c.args, " "), r.stderr)
		}
	}
}
