package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/openpm/opm/internal/opmtest"
)

// gitCommitFiles commits files (metadata path -> bytes) on main of the bare
// repository gitDir with git alone: what a hostile or broken remote
// delivers, with none of opm's checks.
func gitCommitFiles(t *testing.T, gitDir string, files map[string]string) {
	t.Helper()
	index := filepath.Join(t.TempDir(), "index")
	env := append(os.Environ(), "GIT_DIR="+gitDir, "GIT_INDEX_FILE="+index,
		"GIT_AUTHOR_NAME=mallory", "GIT_AUTHOR_EMAIL=m@example.org",
		"GIT_COMMITTER_NAME=mallory", "GIT_COMMITTER_EMAIL=m@example.org")
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env, cmd.Stdin = env, strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	parent := run("", "rev-parse", "--verify", "main")
	run("", "read-tree", parent)
	for p, body := range files {
		blob := run(body, "hash-object", "-w", "--stdin")
		run("", "update-index", "--add", "--cacheinfo", "100644,"+blob+","+p)
	}
	tree := run("", "write-tree")
	commit := run("", "commit-tree", tree, "-p", parent, "-m", "mallory was here")
	run("", "update-ref", "refs/heads/main", commit, parent)
}

const (
	emptyJSONDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	noBytesDigest   = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// rawManifest is an opm manifest with the given layers (JSON objects).
func rawManifest(mediaType string, layers ...string) string {
	return `{"schemaVersion":2,"mediaType":"` + mediaType + `","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` +
		emptyJSONDigest + `","size":2},"layers":[` + strings.Join(layers, ",") + `]}`
}

// rawFile is a layer titled title holding "{}"; rawLink a symbolic link.
func rawFile(title string, size int64) string {
	return fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":"%s","size":%d,"annotations":{"org.opencontainers.image.title":%s}}`, emptyJSONDigest, size, jsonString(title))
}

func rawLink(title, target string) string {
	return fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":"%s","size":0,"annotations":{"org.opencontainers.image.title":%s,"dev.opm.file.symlink":%s}}`, noBytesDigest, jsonString(title), jsonString(target))
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// manyDirs is 2 MB of manifest whose deep paths make a million directories.
func manyDirs() string {
	deep := strings.Repeat("a/", 2030)
	layers := make([]string, 520)
	for i := range layers {
		layers[i] = rawFile(fmt.Sprintf("%d/%sx", i, deep), 2)
	}
	return rawManifest("application/vnd.oci.image.manifest.v1+json", layers...)
}

// A manifest that reached the metadata by other means (committed straight
// into meta.git with git, as a malicious remote would deliver it, while the
// mount runs) is never shown as a path out of its package: its directory
// lists nothing and holds nothing. Tag files with invalid names are not
// shown at all. The good tags, and a tricky but safe package, are served
// throughout, and the mount takes the next push.
func TestHostileMount(t *testing.T) {
	opmtest.RequireFUSE(t)
	home := t.TempDir()
	good := opmtest.WriteTree(t, map[string]string{"file.txt": "good\n", "sub/x": "x"})
	opmOK(t, home, nil, "push", "acme/ok/repo:v1", good)
	mnt := mountDaemon(t, home)
	readGood := func() {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(mnt, "acme/ok/repo/v1/file.txt"))
		if err != nil || string(b) != "good\n" {
			t.Fatalf("good tag: %q, %v", b, err)
		}
	}
	readGood()

	const mt = "application/vnd.oci.image.manifest.v1+json"
	hostile := map[string]string{
		"dotdot":    rawManifest(mt, rawFile("ok.txt", 2), rawFile("../../../../escaped.txt", 2)),
		"abs":       rawManifest(mt, rawFile("/tmp/opm-escaped", 2)),
		"backslash": rawManifest(mt, rawFile(`..\..\escaped`, 2)),
		"nul":       rawManifest(mt, rawFile("a\x00/../../b", 2)),
		"emptypart": rawManifest(mt, rawFile("a//b", 2)),
		"dotpart":   rawManifest(mt, rawFile("a/./b", 2), rawFile("a/b", 2)),
		"dup":       rawManifest(mt, rawFile("x", 2), rawFile("x", 2)),
		"filedir":   rawManifest(mt, rawFile("a", 2), rawFile("a/b", 2)),
		"bidilink":  rawManifest(mt, rawLink("l", "a\u202eb")),
		"huge":      rawManifest(mt, rawFile("f", 1<<62+1)),
		"overflow":  rawManifest(mt, rawFile("f", 1<<62), rawFile("g", 1<<62)),
		"index":     rawManifest("application/vnd.oci.image.index.v1+json", rawFile("f", 2)),
		"garbage":   `{"schemaVersion": 2, "layers": [`,
		"manydirs":  manyDirs(),
	}
	safe := rawManifest(mt, rawFile("a/b/c/x", 2), rawLink("a/b/c/l", "../../.."), rawLink("a/b/c/n", "l/a/b/c/x"), rawLink("up", "./a//b/c/./x"))
	// Links are shown verbatim, as squashfs and tar keep them, whatever
	// they point at: the kernel follows them with the reader's own rights.
	verbatim := map[string]string{"l": "../../../../../etc/passwd", "abs": "/etc/passwd", "dangling": "no/such/file",
		"a/b/c/d/e/f/g/h/l": "../../../../../../../..", "a/b/c/d/e/f/g/h/m": "l/../../../../../../../../../etc/passwd"}
	var links []string
	for title, target := range verbatim {
		links = append(links, rawLink(title, target))
	}
	files := map[string]string{
		"acme/ok/evil/tags/safe.json":    safe,
		"acme/ok/evil/tags/links.json":   rawManifest(mt, links...),
		"acme/ok/evil/tags/.hidden.json": safe,
		"Acme/ok/repo/tags/v1.json":      safe,
		"acme/ok/Evil/tags/v1.json":      safe,
		"acme/ok/evil/tags/v1.txt":       safe,
	}
	for tag, body := range hostile {
		files["acme/ok/evil/tags/"+tag+".json"] = body
	}
	gitCommitFiles(t, filepath.Join(home, "meta.git"), files)

	evil := filepath.Join(mnt, "acme/ok/evil")
	var tags []string
	opmtest.Eventually(t, "the mount to show the hostile commit (a listing of acme/ok/evil)", func() error {
		ents, err := os.ReadDir(evil)
		tags = tags[:0]
		for _, e := range ents {
			tags = append(tags, e.Name())
		}
		if len(tags) == 0 {
			return fmt.Errorf("no tags listed: %v", err)
		}
		return nil
	})
	want := []string{"links", "safe"}
	for tag := range hostile {
		want = append(want, tag)
	}
	slices.Sort(want)
	if !slices.Equal(tags, want) {
		t.Fatalf("the mount lists %v in acme/ok/evil, want %v", tags, want)
	}
	for _, name := range []string{"Acme", "acme/ok/Evil", "acme/ok/evil/.hidden", "acme/ok/evil/v1"} {
		if _, err := os.Lstat(filepath.Join(mnt, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want no such entry (an invalid name)", name, err)
		}
	}

	// Each hostile package: no listing, no entry, for any of its titles.
	for tag := range hostile {
		dir := filepath.Join(evil, tag)
		if ents, err := os.ReadDir(dir); err == nil || len(ents) > 0 {
			t.Errorf("%s: listed %d entries (%v), want an error", tag, len(ents), err)
		} else if !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s: %v, want ENOENT", tag, err)
		}
		for _, name := range []string{"ok.txt", "a", "x", "l", "f", "tmp", "..\\..\\escaped"} {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				t.Errorf("%s/%s exists", tag, name)
			}
		}
	}
	for _, p := range []string{filepath.Join(mnt, "escaped.txt"), filepath.Join(filepath.Dir(mnt), "escaped.txt"), "/tmp/opm-escaped"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}

	// Everything the mount shows of acme: plain names.
	err := filepath.WalkDir(filepath.Join(mnt, "acme"), func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(mnt, p)
		parts := strings.Split(rel, string(filepath.Separator))
		if err != nil {
			if len(parts) == 4 && parts[2] == "evil" && hostile[parts[3]] != "" {
				return filepath.SkipDir // a hostile package: refused, checked above
			}
			return err
		}
		for _, part := range parts {
			if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "\\\x00") {
				t.Errorf("the mount shows %q", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for title, target := range verbatim {
		if got, err := os.Readlink(filepath.Join(evil, "links", title)); err != nil || got != target {
			t.Errorf("links/%s -> %q (%v), want %q verbatim", title, got, err, target)
		}
	}

	// The safe package is served, its links resolving inside it.
	for _, name := range []string{"a/b/c/x", "a/b/c/n", "up"} {
		b, err := os.ReadFile(filepath.Join(evil, "safe", name))
		if err != nil || string(b) != "{}" {
			t.Errorf("safe/%s: %q, %v", name, b, err)
		}
	}
	readGood()

	// The mount goes on: a push through the daemon shows up.
	opmOK(t, home, nil, "push", "acme/ok/repo:v2", good)
	opmtest.Eventually(t, "v2 to show in the mount after the hostile commit", func() error {
		if b, err := os.ReadFile(filepath.Join(mnt, "acme/ok/repo/v2/sub/x")); err != nil || string(b) != "x" {
			return fmt.Errorf("v2/sub/x: %q, %v", b, err)
		}
		return nil
	})
	readGood()
}
