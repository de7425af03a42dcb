package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/openpm/opm"
	"golang.org/x/crypto/ssh"
)

// TestJSONDocumented runs every command that takes --json, flags placed
// anywhere, and fails when one prints a field docs/json.md does not show
// under its heading, or a document that is not JSON; with --json, an error
// is one JSON object on stderr with the fields of the page's "Errors".
func TestJSONDocumented(t *testing.T) {
	doc := docFields(t)
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	t.Setenv("OPM_HOME", "")
	t.Setenv("GIT_AUTHOR_NAME", "Tess Ter")
	t.Setenv("GIT_AUTHOR_EMAIL", "tess@example.org")
	for _, bare := range []string{"origin.git", "mirror.git"} {
		if out, err := exec.Command("git", "init", "-q", "--bare", filepath.Join(dir, bare)).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v %s", err, out)
		}
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "bin", "tool"), []byte("hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin/tool", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}

	key := filepath.Join(dir, "ci")
	testSSHKey(t, key)
	pub2 := testSSHKey(t, filepath.Join(dir, "ops"))
	runs := [][]string{
		{"init"},
		{"version"},
		{"remote", "add", "origin", "--meta", filepath.Join(dir, "origin.git"), "--blobs", "file://" + filepath.Join(dir, "ob") + "?create_dir=1"},
		{"remote", "add", "mirror", "--meta", filepath.Join(dir, "mirror.git"), "--blobs", "file://" + filepath.Join(dir, "mb") + "?create_dir=1"},
		{"remote", "ls"},
		{"config", "signing-key", key},
		{"signers", "add", "ci@example.org", key + ".pub", "--valid-after", "2026-01-01"},
		{"signers", "add", "ops@example.org", pub2},
		{"signers", "rm", "ops@example.org"},
		{"signers", "ls"},
		{"remote", "trust", "mirror", pub2},
		{"timestamp", "--expires", "72h"},
		{"push", "acme/web/site:v1", src},
		{"push", "acme/web/site:v1", src},
		{"tag", "acme/web/site:v1", "acme/web/site:stable"},
		{"rm", "acme/web/site:stable"},
		{"pull", "acme/web/site:v1", "-o", filepath.Join(dir, "out")},
		{"files", "acme/web/site:v1"},
		{"ls"},
		{"ls", "acme/web"},
		{"ls", "acme/web/site"},
		{"ls", "acme/*/*:v1"},
		{"log"},
		{"log", "acme/web/site:v1"},
		{"fsck"},
		{"gc"},
		{"gc", "--dry-run"},
		{"sync"},
		{"sync", "--prefetch"},
		{"status"},
		{"sync", "origin", "mirror"},
		{"sync", "origin", "mirror", "--dry-run"},
		{"site", filepath.Join(dir, "site")},
		{"config", "cache.quota", "1GiB"},
		{"config", "cache.quota"},
		{"config", "--unset", "cache.quota"},
		{"cache", "stats"},
		{"cache", "ls"},
		{"cache", "pin", "acme/web/*"},
		{"cache", "pin"},
		{"cache", "unpin", "acme/web/*"},
		{"cache", "prune"},
		{"remote", "rm", "mirror"},
	}
	for _, args := range runs {
		section := args[0]
		if args[0] == "remote" || args[0] == "cache" || args[0] == "signers" {
			section += " " + args[1]
		}
		// --json after the arguments, --home after the command: both
		// are flags, wherever they stand.
		stdout, stderr, err := runApp(append(append(args, "--json"), "--home", home)...)
		if err != nil {
			t.Errorf("opm %s: %v; stderr: %s", strings.Join(args, " "), err, stderr)
			continue
		}
		checkFields(t, "opm "+strings.Join(args, " "), doc, section, stdout)
	}

	// Errors: one JSON object on stderr, nothing on stdout.
	for _, args := range [][]string{
		{"ls", "nope", "--json"},
		{"--json", "pull", "acme/web/site:v9", "-o", filepath.Join(dir, "out2")},
		{"ls", "--json", "--bogus"},
	} {
		stdout, stderr, err := runApp(append(args, "--home", home)...)
		if err == nil {
			t.Errorf("opm %s: no error", strings.Join(args, " "))
			continue
		}
		if stdout != "" {
			t.Errorf("opm %s: printed %q on stdout", strings.Join(args, " "), stdout)
		}
		if strings.Count(stderr, "\n") != 1 {
			t.Errorf("opm %s: stderr is not one line: %q", strings.Join(args, " "), stderr)
		}
		checkFields(t, "opm "+strings.Join(args, " "), doc, "errors", stderr)
		var e struct {
			Error struct {
				Kind    string
				Exit    int
				Message string
			}
		}
		if err := json.Unmarshal([]byte(stderr), &e); err != nil {
			t.Errorf("opm %s: %v", strings.Join(args, " "), err)
		}
		if k := opm.KindOf(err); e.Error.Kind != k.Name || e.Error.Exit != k.Exit || e.Error.Message != opm.OneLine(err) {
			t.Errorf("opm %s: %s; want kind %s, exit %d, message %q", strings.Join(args, " "), stderr, k.Name, k.Exit, opm.OneLine(err))
		}
	}
}

// runApp runs opm in this process as main does, error printing included.
func runApp(args ...string) (stdout, stderr string, err error) {
	var out, errs bytes.Buffer
	app := newApp(&out, &errs)
	argv := append([]string{"opm"}, args...)
	err = app.RunContext(context.Background(), permuteArgs(app, argv))
	if err != nil {
		printError(&errs, argv, opm.KindOf(err).Name, exitCode(err), opm.OneLine(err))
	}
	return out.String(), errs.String(), err
}

// checkFields fails unless out is JSON whose every field (as a path:
// "tags[].tag") is among the fields docs/json.md shows in section.
func checkFields(t *testing.T, what string, doc map[string]map[string]bool, section, out string) {
	t.Helper()
	fields, ok := doc[section]
	if !ok {
		t.Errorf("%s: docs/json.md has no section for opm %s", what, section)
		return
	}
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Errorf("%s: not JSON (%v): %q", what, err, out)
		return
	}
	got := map[string]bool{}
	jsonFields(v, "", got)
	for f := range got {
		if !fields[f] {
			t.Errorf("%s: prints %q, which docs/json.md does not show under opm %s", what, f, section)
		}
	}
}

// docFields reads docs/json.md: for each "## opm A, opm B" heading (and
// "## Errors", as "errors"), the fields of the JSON blocks below it.
func docFields(t *testing.T) map[string]map[string]bool {
	b, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	var cur []string
	block := regexp.MustCompile("(?s)^```json\n(.*?)\n```")
	text := string(b)
	for i := 0; i < len(text); i++ {
		if i > 0 && text[i-1] != '\n' {
			continue
		}
		rest := text[i:]
		if h, ok := strings.CutPrefix(rest, "## "); ok {
			h, _, _ = strings.Cut(h, "\n")
			cur = nil
			for _, name := range strings.Split(h, ", ") {
				name = strings.Trim(name, "`")
				if name == "Errors" {
					name = "errors"
				}
				cur = append(cur, strings.TrimPrefix(name, "opm "))
			}
			continue
		}
		if m := block.FindStringSubmatch(rest); m != nil {
			var v any
			if err := json.Unmarshal([]byte(m[1]), &v); err != nil {
				t.Fatalf("docs/json.md: a block under %v is not JSON: %v", cur, err)
			}
			for _, s := range cur {
				if out[s] == nil {
					out[s] = map[string]bool{}
				}
				jsonFields(v, "", out[s])
			}
		}
	}
	if out["push"] == nil || out["errors"] == nil {
		t.Fatalf("docs/json.md: sections not read: %v", slices.Collect(maps.Keys(out)))
	}
	return out
}

// jsonFields adds the field paths of v under prefix to fields: "a", "a.b",
// "a[]", "a[].b".
func jsonFields(v any, prefix string, fields map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			fields[p] = true
			jsonFields(x, p, fields)
		}
	case []any:
		for _, x := range v {
			jsonFields(x, prefix+"[]", fields)
		}
	}
}

// testSSHKey writes an ed25519 key without a passphrase at path (OpenSSH
// format) and its public key at path.pub, and returns the public key.
func testSSHKey(t *testing.T, path string) string {
	t.Helper()
	pubKey, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := ssh.MarshalAuthorizedKey(sshPub)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(pub))
}
