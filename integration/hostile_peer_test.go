package integration

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/opmtest"
)

// TestHostilePeer: an upstream that serves, one after the other, each
// class of hostile manifest, description file, stray file or compressed
// object (committed to its metadata with git alone, as a compromised host
// or a hostile mirror would) to a reader that follows it with a mounted
// daemon. Every class is refused through opm sync (carried out by the
// daemon) with one line naming the tag or file and the rule, nothing of
// the fetch is applied (not even the tracking ref), the daemon keeps
// serving the last good state — the good tag reads, the hostile one never
// appears — and once the upstream is mended the reader follows it again.
func TestHostilePeer(t *testing.T) {
	opmtest.RequireFUSE(t)
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", "--initial-branch=main", origin).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	blobs := "file://" + filepath.Join(dir, "blobs") + "?create_dir=1"
	pub, reader := filepath.Join(dir, "pub"), filepath.Join(dir, "reader")
	mustOpm(t, pub, "remote", "add", "origin", "--meta", origin, "--blobs", blobs)
	mustOpm(t, reader, "remote", "add", "origin", "--meta", origin, "--blobs", blobs)
	good := pkgDir(t, 40, 2, 300)
	mustOpm(t, pub, "push", "acme/ok/repo:v1", good)
	goodHead := gitOut(t, origin, "rev-parse", "main")

	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() { unmountAndWait(t, reader, mnt) })
	opmOK(t, reader, nil, "mount", "--daemon", "--sync-interval", "100ms", mnt)
	opmtest.Eventually(t, "the good tag to show in the mount", appears(filepath.Join(mnt, "acme/ok/repo/v1/f000.bin")))

	layer := func(title string) map[string]any {
		return map[string]any{"mediaType": opm.MediaTypeOctet, "digest": opm.EmptyFileDigest, "size": 0,
			"annotations": map[string]string{opm.AnnotationTitle: title, opm.AnnotationMode: "0644"}}
	}
	manifest := func(mediaType string, titles ...string) []byte {
		m := map[string]any{"schemaVersion": 2,
			"config": map[string]any{"mediaType": opm.MediaTypeEmpty, "digest": opm.EmptyDigest, "size": 2}, "layers": []any{}}
		if mediaType != "" {
			m["mediaType"] = mediaType
		}
		var ls []any
		for _, ti := range titles {
			ls = append(ls, layer(ti))
		}
		if ls != nil {
			m["layers"] = ls
		}
		b, err := json.Marshal(m)
		must(t, err)
		return b
	}
	big := func(n int) []byte { return []byte(`{"description":"` + strings.Repeat("a", n) + `"}`) }
	for _, c := range []struct {
		name string
		body []byte
		why  string // in the refusal
		// path is where the file is committed (default: the tag
		// acme/ok/evil:<name>), names what the refusal names (default:
		// that tag).
		path, names string
		// bomb: body is the size of a sparse file of zeros.
		bomb int64
	}{
		{"dotgit", manifest(opm.MediaTypeManifest, ".git/hooks/pre-commit"), `that is git's own directory`, "", "", 0},
		{"dotgit-ntfs", manifest(opm.MediaTypeManifest, "GIT~1/config"), `that is git's own directory`, "", "", 0},
		{"dotgit-hfs", manifest(opm.MediaTypeManifest, ".g\u200cit/config"), `that is git's own directory`, "", "", 0},
		{"case", manifest(opm.MediaTypeManifest, "README", "readme"), "differ only by case or Unicode normalization", "", "", 0},
		{"nfd", manifest(opm.MediaTypeManifest, "caf\u00e9", "cafe\u0301"), "differ only by case or Unicode normalization", "", "", 0},
		{"c1", manifest(opm.MediaTypeManifest, "a\u0085b"), "control character U+0085", "", "", 0},
		{"bidi", manifest(opm.MediaTypeManifest, "evil\u202etxt.exe"), "bidirectional control U+202E", "", "", 0},
		{"invisible", manifest(opm.MediaTypeManifest, "read\u200bme", "readme"), "invisible or line-breaking character U+200B", "", "", 0},
		{"html", manifest("text/html", "index.html"), `media type "text/html" is not`, "", "", 0},
		{"untyped", manifest("", "../../etc/passwd"), `has a '.' or '..' part`, "", "", 0},
		// Description files: a limit (layout.MaxMetaSize) and a schema.
		{"meta-big", big(28 << 20), "over the 65536-byte limit of a description file", "acme/namespace.json", "", 0},
		{"meta-just-over", big(64 << 10), "over the 65536-byte limit of a description file", "acme/ok/project.json", "", 0},
		{"meta-field", []byte(`{"description":"x","script":"alert(1)"}`), `field "script" is not one of a namespace's`, "acme/namespace.json", "", 0},
		{"meta-labels", []byte(`{"labels":{"team":{"deep":[1,2,3]}}}`), "labels: want an object of strings", "acme/ok/evil/repository.json", "", 0},
		{"meta-bidi", []byte(`{"description":"evil\u202etxt.exe"}`), "bidirectional control U+202E", "acme/ok/project.json", "", 0},
		// A file the layout has no place for.
		{"junk", []byte("#!/bin/sh\n"), "not a file of the layout", "acme/ok/evil/tags/run.sh", "", 0},
		// An object over the per-file limit, refused at fetch from its
		// header (zeros: 64 KiB on the wire); its fetch is not kept.
		{"bomb", nil, "over the 67108864-byte limit", "acme/ok/evil/zeros", "fetch", opm.MaxManifestSize + 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := filepath.Join(t.TempDir(), "evil.json")
			must(t, os.WriteFile(body, c.body, 0o644))
			if c.bomb > 0 {
				must(t, os.Truncate(body, c.bomb))
			}
			path, names := c.path, c.names
			if path == "" {
				path = "acme/ok/evil/tags/" + c.name + ".json"
				names = "acme/ok/evil:" + c.name
			} else if names == "" {
				names = path
			}
			tracking := gitOut(t, filepath.Join(reader, "meta.git"), "rev-parse", "refs/remotes/origin/main")
			gitCommitFile(t, origin, path, body)
			r := syncOpm(t, reader, "sync")
			if r.code != 2 || !strings.Contains(r.stderr, names) || !strings.Contains(r.stderr, c.why) ||
				strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("opm sync: exit %d, %q; want exit 2 and one line naming %s and %q", r.code, r.stderr, names, c.why)
			}
			// Nothing of a refused fetch is applied: the tracking ref
			// stays where the last good fetch left it.
			if h := gitOut(t, filepath.Join(reader, "meta.git"), "rev-parse", "refs/remotes/origin/main"); h != tracking {
				t.Errorf("the tracking ref moved to %s", h)
			}
			// The daemon's own follow refuses too: once it has tried the
			// hostile head (its log says so), the hostile tag is not shown
			// and the good one still reads.
			hostile := gitOut(t, origin, "rev-parse", "main")
			opmtest.Eventually(t, "the daemon's follow to refuse "+hostile[:12], func() error {
				log, err := os.ReadFile(filepath.Join(reader, "opm.log"))
				if err != nil {
					return err
				}
				for line := range strings.SplitSeq(string(log), "\n") {
					// A fetch refused from an object's header names the
					// rule, not the commit.
					if strings.Contains(line, "sync with origin failed") && (strings.Contains(line, hostile[:12]) || c.bomb > 0 && strings.Contains(line, c.why)) {
						return nil
					}
				}
				return errors.New("no refusal of it in the daemon's log yet")
			})
			if exists(filepath.Join(mnt, "acme/ok/evil")) {
				t.Error("the hostile tag's repository appeared in the mount")
			}
			if _, err := os.ReadFile(filepath.Join(mnt, "acme/ok/repo/v1/f000.bin")); err != nil {
				t.Errorf("the good tag no longer reads: %v", err)
			}
			if h := gitOut(t, filepath.Join(reader, "meta.git"), "rev-parse", "main"); h != goodHead {
				t.Errorf("the reader moved to %s", h)
			}
			// Mend the upstream: back to the good head.
			gitOut(t, origin, "update-ref", "refs/heads/main", goodHead)
		})
	}
	log, err := os.ReadFile(filepath.Join(reader, "opm.log"))
	must(t, err)
	if !strings.Contains(string(log), "was not taken") {
		t.Error("the daemon's log says nothing of the refused heads")
	}
	// Mended, the upstream is followed again.
	mustOpm(t, pub, "push", "acme/ok/repo:v2", good)
	opmtest.Eventually(t, "the next good tag to show in the mount", appears(filepath.Join(mnt, "acme/ok/repo/v2/f000.bin")))
}

// gitCommitFile commits the file at src as path on main of the bare
// repository gitDir with git alone.
func gitCommitFile(t *testing.T, gitDir, path, src string) {
	t.Helper()
	script := `set -e
export GIT_DIR="$1" GIT_INDEX_FILE="$1/evil-index"
export GIT_AUTHOR_NAME=mallory GIT_AUTHOR_EMAIL=m@example.org GIT_COMMITTER_NAME=mallory GIT_COMMITTER_EMAIL=m@example.org
parent=$(git rev-parse -q --verify refs/heads/main || true)
rm -f "$GIT_INDEX_FILE"
if [ -n "$parent" ]; then git read-tree "$parent"; fi
blob=$(git hash-object -w "$3")
git update-index --add --cacheinfo "100644,$blob,$2"
tree=$(git write-tree)
commit=$(git commit-tree "$tree" ${parent:+-p "$parent"} -m "evil $2")
git update-ref refs/heads/main "$commit" $parent
rm -f "$GIT_INDEX_FILE"`
	if out, err := exec.Command("sh", "-c", script, "sh", gitDir, path, src).CombinedOutput(); err != nil {
		t.Fatalf("commit %s: %v %s", path, err, out)
	}
}

func gitOut(t *testing.T, gitDir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", gitDir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestDaemonHTTPReadToken: the daemon's HTTP listener takes a read token
// as opm serve does (it had none: a mount's registry was open to every
// reader of its port).
func TestDaemonHTTPReadToken(t *testing.T) {
	opmtest.RequireFUSE(t)
	home := t.TempDir()
	mustOpm(t, home, "push", "acme/ok/repo:v1", pkgDir(t, 41, 1, 10))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	tok := filepath.Join(t.TempDir(), "read-token")
	must(t, os.WriteFile(tok, []byte("s3cret\n"), 0o600))
	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() { unmountAndWait(t, home, mnt) })
	opmOK(t, home, nil, "mount", "--daemon", "--http", addr, "--http-read-token-file", tok, mnt)
	get := func(auth string) int {
		req, err := http.NewRequest("GET", "http://"+addr+"/v2/acme/ok/repo/tags/list", nil)
		must(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	opmtest.Eventually(t, "the daemon's HTTP listener to answer", func() error {
		if get("") == 0 {
			return errors.New("no answer")
		}
		return nil
	})
	if code := get(""); code != 401 {
		t.Errorf("a read without the token: %d, want 401", code)
	}
	if code := get("Bearer s3cret"); code != 200 {
		t.Errorf("a read with the token: %d, want 200", code)
	}
	if r := syncOpm(t, t.TempDir(), "mount", "--http-read-token-file", tok, mnt); r.code != 2 {
		t.Errorf("--http-read-token-file without --http: exit %d %s", r.code, r.stderr)
	}
}
