package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// TestPrintsTextEscaped: text from git or a manifest — a commit's author
// and subject, a path of the metadata fsck reports — reaches the terminal
// with its control characters escaped: an origin's escape sequences (here
// one that sets the window title, one that clears the screen) never do.
func TestPrintsTextEscaped(t *testing.T) {
	ctx := context.Background()
	const author, subject = "eve\x1b]2;owned\x07", "\x1b[2Jwiped\u202e"
	t.Setenv("GIT_AUTHOR_NAME", author)
	t.Setenv("GIT_AUTHOR_EMAIL", "eve@example.org")
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	r, err := registry.Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, "pkg")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref, _ := opm.ParseReference("acme/ok/repo:v1")
	if _, err := r.Push(ctx, ref, []string{pkg}, registry.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	r.Close()

	// A commit made with git alone, as an origin's: a second tag, and a
	// file whose name fsck reports, under a subject with escapes.
	script := `set -e
export GIT_DIR="$1" GIT_INDEX_FILE="$1/evil-index"
parent=$(git rev-parse refs/heads/main)
git read-tree "$parent"
blob=$(git rev-parse "$parent:acme/ok/repo/tags/v1.json")
git update-index --add --cacheinfo "100644,$blob,acme/ok/repo/tags/v2.json"
git update-index --add --cacheinfo "100644,$blob,acme/ok/$(printf '\033[31m')red"
commit=$(git commit-tree "$(git write-tree)" -p "$parent" -m "$2")
git update-ref refs/heads/main "$commit" "$parent"
rm -f "$GIT_INDEX_FILE"`
	if out, err := exec.Command("sh", "-c", script, "sh", filepath.Join(home, "meta.git"), subject).CombinedOutput(); err != nil {
		t.Fatalf("git: %v %s", err, out)
	}

	var stdout, stderr bytes.Buffer
	g := globalOptions{ctx: ctx, home: home, stdout: &stdout, stderr: &stderr}
	if err := runLog(g, logOptions{}, ""); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	if strings.ContainsAny(out, "\x1b\x07\u202e") || !strings.Contains(out, `eve\x1b]2;owned\x07`) || !strings.Contains(out, `\x1b[2Jwiped\u202e`) {
		t.Errorf("opm log printed %q; want the author and subject with their escapes escaped", out)
	}
	stdout.Reset()
	runFsck(g, fsckOptions{})
	if out := stdout.String() + stderr.String(); strings.Contains(out, "\x1b") || !strings.Contains(out, `\x1b[31mred`) {
		t.Errorf("opm fsck printed %q; want the odd path with its escape escaped", out)
	}
}
