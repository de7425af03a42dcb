package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
