package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm/internal/opmtest"
)

// sshKey makes an ed25519 key (or of the ssh-keygen arguments given) at
// dir/name without a passphrase, and returns its path and public key.
func sshKey(t *testing.T, dir, name string, args ...string) (key, pub string) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		opmtest.Unavailable(t, "no ssh-keygen (scripts/deps.sh installs openssh-client): %v", err)
	}
	if len(args) == 0 {
		args = []string{"-t", "ed25519"}
	}
	key = filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", append([]string{"-q", "-N", "", "-C", name, "-f", key}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	b, err := os.ReadFile(key + ".pub")
	must(t, err)
	return key, strings.TrimSpace(string(b))
}

// fingerprint is the key's SHA256 fingerprint as ssh-keygen prints it.
func fingerprint(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-lf", key+".pub").Output()
	must(t, err)
	return strings.Fields(string(out))[1]
}

// TestHostileOrigin: a reader that trusts a publisher's key follows only
// history that verifies. Someone with push access to the metadata origin
// (a stolen deploy key, a compromised git host) serves each refused case;
// opm sync, opm fsck --remote and a following daemon refuse it, take
// nothing, and say why; the mount keeps the last verified state. A key
// rotation and a revocation are followed; real git verifies opm's commits
// against the registry's own allowed signers file.
func TestHostileOrigin(t *testing.T) {
	opmtest.RequireFUSE(t)
	dir := t.TempDir()
	k1, k1pub := sshKey(t, dir, "ci")
	k2, k2pub := sshKey(t, dir, "ops")
	k3, _ := sshKey(t, dir, "eve")
	origin := filepath.Join(dir, "origin.git")
	git(t, "init", "-q", "--bare", "--initial-branch=main", origin)
	blobs := "file://" + filepath.Join(dir, "blobs") + "?create_dir=1"
	pub, reader, tofu := filepath.Join(dir, "pub"), filepath.Join(dir, "reader"), filepath.Join(dir, "tofu")
	mustOpm(t, pub, "remote", "add", "origin", "--meta", origin, "--blobs", blobs)
	mustOpm(t, pub, "config", "signing-key", k1)
	// Signing on: the first signer is the key signing the commit.
	mustOpm(t, pub, "signers", "add", "ci@example.org", k1+".pub")
	src := pkgDir(t, 95, 2, 500)
	mustOpm(t, pub, "push", "acme/web/site:v1", src)
	// The reader pins the publisher's key; another trusts on first use.
	mustOpm(t, reader, "remote", "add", "origin", "--meta", origin, "--blobs", blobs, "--trust", k1pub)
	mustOpm(t, tofu, "remote", "add", "origin", "--meta", origin, "--blobs", blobs)
	if r := mustOpm(t, tofu, "sync"); !strings.Contains(r.stderr, "trusting "+fingerprint(t, k1)+" (ci@example.org) on first use") {
		t.Fatalf("first sync of an unpinned reader: %s", r.stderr)
	}
	var sync struct {
		Trust struct {
			Signed  bool   `json:"signed"`
			Key     string `json:"trusted_key"`
			Signer  string `json:"signer"`
			Commits int    `json:"verified_commits"`
		} `json:"trust"`
	}
	must(t, json.Unmarshal([]byte(mustOpm(t, reader, "sync", "--json").stdout), &sync))
	if !sync.Trust.Signed || sync.Trust.Key != fingerprint(t, k1) || sync.Trust.Signer != fingerprint(t, k1) {
		t.Fatalf("opm sync --json of a pinned reader: %+v", sync.Trust)
	}
	// Real git agrees, with the registry's own allowed signers.
	signers := filepath.Join(dir, "allowed_signers")
	must(t, os.WriteFile(signers, []byte(gitOut(t, origin, "show", "main:.allowed_signers")+"\n"), 0o644))
	for _, c := range []string{"main", "main~1"} {
		if out, err := exec.Command("git", "--git-dir", origin, "-c", "gpg.ssh.allowedSignersFile="+signers, "verify-commit", "-v", c).CombinedOutput(); err != nil {
			t.Fatalf("git verify-commit %s: %v\n%s", c, err, out)
		}
	}

	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() { unmountAndWait(t, reader, mnt) })
	opmOK(t, reader, nil, "mount", "--daemon", "--sync-interval", "100ms", mnt)
	opmtest.Eventually(t, "v1 to show in the mount", appears(filepath.Join(mnt, "acme/web/site/v1/f000.bin")))
	v1 := gitOut(t, origin, "show", "main:acme/web/site/tags/v1.json")

	// attack commits files onto origin's main with the git CLI, signed by
	// key (unsigned when ""), on top of base (origin's main when "").
	attack := func(key, base string, files map[string]string) {
		t.Helper()
		work := filepath.Join(t.TempDir(), "work")
		git(t, "clone", "-q", origin, work)
		if base != "" {
			git(t, "-C", work, "reset", "-q", "--hard", base)
		}
		for p, body := range files {
			must(t, os.MkdirAll(filepath.Dir(filepath.Join(work, p)), 0o755))
			must(t, os.WriteFile(filepath.Join(work, p), []byte(body), 0o644))
		}
		args := []string{"-C", work, "-c", "user.name=Eve", "-c", "user.email=eve@example.org"}
		if key != "" {
			args = append(args, "-c", "gpg.format=ssh", "-c", "user.signingkey="+key)
		}
		git(t, append(args, "add", "-A")...)
		commit := append(args, "commit", "-q", "-m", "evil")
		if key != "" {
			commit = append(commit, "-S")
		}
		git(t, commit...)
		git(t, "-C", work, "push", "-q", "--force", "origin", "HEAD:main")
	}
	evil := map[string]string{"acme/web/site/tags/evil.json": v1}

	good := gitOut(t, origin, "rev-parse", "main")
	for _, c := range []struct {
		name, why string
		serve     func()
	}{
		{"unsigned", "is not signed", func() { attack("", "", evil) }},
		{"unknown key", "is signed by " + fingerprint(t, k3) + ": not an allowed signer", func() { attack(k3, "", evil) }},
		{"a key adding itself", "not an allowed signer", func() {
			files := map[string]string{".allowed_signers": gitOut(t, origin, "show", "main:.allowed_signers") + "\neve@example.org " + mustRead(t, k3+".pub")}
			attack(k3, "", files)
		}},
		// The publisher's signature of main, on a new commit after it.
		{"forged", "does not match its content (forged or altered)", func() {
			body := gitOut(t, origin, "cat-file", "commit", "main")
			forged := strings.Replace(body, "parent "+gitOut(t, origin, "rev-parse", "main~1"), "parent "+good, 1)
			cmd := exec.Command("git", "--git-dir", origin, "hash-object", "-t", "commit", "-w", "--stdin")
			cmd.Stdin = strings.NewReader(forged + "\n")
			id, err := cmd.Output()
			if err != nil || forged == body {
				t.Fatalf("forge: %v", err)
			}
			gitOut(t, origin, "update-ref", "refs/heads/main", strings.TrimSpace(string(id)))
		}},
		{"rollback", "the last commit verified: a rollback", func() { gitOut(t, origin, "update-ref", "refs/heads/main", "main~1") }},
		// History rewritten, though signed by the publisher's own key.
		{"fork", "does not descend from " + good[:12], func() { attack(k1, "HEAD~1", evil) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.serve()
			t.Cleanup(func() {
				gitOut(t, origin, "update-ref", "refs/heads/main", good)
				opmtest.Eventually(t, "the daemon to verify origin's main again", trustState(mnt, ""))
			})
			r := syncOpm(t, reader, "sync")
			if r.code == 0 || !strings.Contains(r.stderr, c.why) || !strings.Contains(r.stderr, "nothing of it was taken") {
				t.Fatalf("opm sync of a hostile origin (%s): exit %d: %s", c.name, r.code, r.stderr)
			}
			if got := gitHead(t, reader); got != good {
				t.Fatalf("the reader moved to %s", got)
			}
			if r := syncOpm(t, reader, "fsck", "--remote", "origin"); r.code == 0 || !strings.Contains(r.stderr, c.why) {
				t.Fatalf("opm fsck --remote origin: exit %d: %s", r.code, r.stderr)
			}
			opmtest.Eventually(t, "the daemon to refuse origin's main", trustState(mnt, c.why))
			if r := mustOpm(t, reader, "status"); !strings.Contains(r.stdout, "refused at") || !strings.Contains(r.stdout, c.why) {
				t.Fatalf("opm status does not say why origin's head was refused:\n%s", r.stdout)
			}
			if exists(filepath.Join(mnt, "acme/web/site/evil")) {
				t.Fatal("the mount shows a tag of a refused commit")
			}
		})
	}

	// A history that verifies but holds what a push would refuse is not
	// taken, and does not count as verified (it did: the fetch's check
	// marked it verified before refusing it, and the next daemon start took
	// the older tracking ref for a rollback).
	attack(k1, "", map[string]string{"acme/web/site/tags/bad.json": "not a manifest"})
	if r := syncOpm(t, reader, "sync"); r.code == 0 || !strings.Contains(r.stderr, "was not taken") {
		t.Fatalf("a signed commit of a bad manifest: exit %d: %s", r.code, r.stderr)
	}
	if got := gitOut(t, filepath.Join(reader, "meta.git"), "rev-parse", "refs/remotes/origin/verified"); got != good {
		t.Fatalf("a refused head counts as verified: %s, want %s", got, good)
	}
	gitOut(t, origin, "update-ref", "refs/heads/main", good)
	opmtest.Eventually(t, "the daemon to verify origin's main again", trustState(mnt, ""))

	// Rotation: ci adds ops; ops takes over and revokes ci.
	mustOpm(t, pub, "signers", "add", "ops@example.org", k2pub)
	mustOpm(t, pub, "config", "signing-key", k2)
	mustOpm(t, pub, "signers", "rm", "ci@example.org")
	mustOpm(t, pub, "push", "acme/web/site:v2", src)
	opmtest.Eventually(t, "v2, signed by the rotated key, to show in the mount", appears(filepath.Join(mnt, "acme/web/site/v2/f000.bin")))
	// A publisher whose key was revoked is refused before it publishes.
	mustOpm(t, pub, "config", "signing-key", k1)
	r := syncOpm(t, pub, "push", "acme/web/site:v3", src)
	wantCode(t, r, 10, "readers would refuse the commit")
	// And a commit by the revoked key, served by origin, is refused.
	good = gitOut(t, origin, "rev-parse", "main")
	attack(k1, "", evil)
	if r := syncOpm(t, reader, "sync"); r.code == 0 || !strings.Contains(r.stderr, "not an allowed signer") {
		t.Fatalf("a commit by a revoked key: exit %d: %s", r.code, r.stderr)
	}
	// A mirror copies no history its source's readers would refuse.
	mirror := filepath.Join(dir, "mirror.git")
	git(t, "init", "-q", "--bare", "--initial-branch=main", mirror)
	mustOpm(t, reader, "remote", "add", "mirror", "--meta", mirror, "--blobs", "file://"+filepath.Join(dir, "mirror-blobs")+"?create_dir=1")
	if r := syncOpm(t, reader, "sync", "origin", "mirror"); r.code == 0 || !strings.Contains(r.stderr, "not an allowed signer") {
		t.Fatalf("a mirror of a refused history: exit %d: %s", r.code, r.stderr)
	}
	if out, _ := exec.Command("git", "--git-dir", mirror, "rev-parse", "-q", "--verify", "main").Output(); len(out) > 0 {
		t.Fatalf("the mirror took %s", out)
	}
	// A daemon does not start on what a git fetch by hand took unverified.
	unmountAndWait(t, reader, mnt)
	git(t, "--git-dir", filepath.Join(reader, "meta.git"), "fetch", "-q", "origin")
	if r := syncOpm(t, reader, "mount", "--daemon", mnt); r.code == 0 || !strings.Contains(r.stderr, "not an allowed signer") || !strings.Contains(r.stderr, "opm sync --force") {
		t.Fatalf("a daemon start on an unverified tracking ref: exit %d: %s", r.code, r.stderr)
	}
	gitOut(t, origin, "update-ref", "refs/heads/main", good)
	mustOpm(t, reader, "sync", "--force")
	opmOK(t, reader, nil, "mount", "--daemon", mnt)
	// opm log shows who signed each change, verified against the
	// registry's allowed signers at its parent.
	var log []struct {
		Action    string
		Signature struct{ Status, Principal string }
	}
	must(t, json.Unmarshal([]byte(mustOpm(t, reader, "log", "--json").stdout), &log))
	principals := map[string]string{}
	for _, e := range log {
		if e.Signature.Status != "verified" {
			t.Errorf("opm log: %q is %s", e.Action, e.Signature.Status)
		}
		principals[e.Action] = e.Signature.Principal
	}
	if principals["push acme/web/site:v1"] != "ci@example.org" || principals["push acme/web/site:v2"] != "ops@example.org" {
		t.Errorf("opm log: signers %v", principals)
	}
	if r := mustOpm(t, reader, "log", "-n", "1"); !strings.Contains(r.stdout, "signed by ops@example.org") {
		t.Errorf("opm log: %s", r.stdout)
	}
	// The reader that trusted on first use follows the rotation too.
	mustOpm(t, tofu, "sync")
	if got := gitHead(t, tofu); got != good {
		t.Fatalf("the first-use reader is at %s, origin at %s", got, good)
	}
}

// trustState is a condition for opmtest.Eventually: the mount's daemon last
// verified origin with a refusal saying why ("": taken).
func trustState(mnt, why string) func() error {
	return func() error {
		b, err := os.ReadFile(filepath.Join(mnt, ".opm", "status"))
		if err != nil {
			return err
		}
		var st struct {
			Trust []struct {
				Remote, Refused string
			} `json:"trust"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return err
		}
		for _, s := range st.Trust {
			if s.Remote == "origin" && (why == "" && s.Refused == "" || why != "" && strings.Contains(s.Refused, why)) {
				return nil
			}
		}
		return fmt.Errorf("status says %s", bytes.TrimSpace(b))
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return string(b)
}

// TestSignedMirrors: a preserving mirror copies the publisher's commits as
// they are, so its readers verify them against the publisher's key; a
// filtered mirror writes commits of its own, signed by the mirroring
// home's key (allowed in the mirror's own .allowed_signers), each naming
// its source commit (Opm-Synced-From), and its readers trust that key.
func TestSignedMirrors(t *testing.T) {
	dir := t.TempDir()
	kp, _ := sshKey(t, dir, "publisher")
	km, kmpub := sshKey(t, dir, "mirror")
	bare := func(name string) string {
		p := filepath.Join(dir, name+".git")
		git(t, "init", "-q", "--bare", "--initial-branch=main", p)
		return p
	}
	origin, full, edge := bare("origin"), bare("full"), bare("edge")
	bucket := func(name string) string { return "file://" + filepath.Join(dir, name) + "?create_dir=1" }
	pub, mirrorer, edgeAdmin := filepath.Join(dir, "pub"), filepath.Join(dir, "mirrorer"), filepath.Join(dir, "edge-admin")
	mustOpm(t, pub, "remote", "add", "origin", "--meta", origin, "--blobs", bucket("ob"))
	mustOpm(t, pub, "config", "signing-key", kp)
	mustOpm(t, pub, "signers", "add", "ci@example.org", kp+".pub")
	mustOpm(t, pub, "push", "acme/web/site:v1", pkgDir(t, 97, 1, 100))
	mustOpm(t, pub, "push", "acme/tools/cli:v1", pkgDir(t, 98, 1, 100))
	// The edge mirror's operator turns signing on there with its key.
	mustOpm(t, edgeAdmin, "remote", "add", "origin", "--meta", edge, "--blobs", bucket("eb"))
	mustOpm(t, edgeAdmin, "config", "signing-key", km)
	mustOpm(t, edgeAdmin, "signers", "add", "mirror@example.org", km+".pub")

	mustOpm(t, mirrorer, "remote", "add", "origin", "--meta", origin, "--blobs", bucket("ob"), "--trust", fingerprint(t, kp))
	mustOpm(t, mirrorer, "remote", "add", "full", "--meta", full, "--blobs", bucket("fb"))
	mustOpm(t, mirrorer, "remote", "add", "edge", "--meta", edge, "--blobs", bucket("eb"))
	mustOpm(t, mirrorer, "config", "signing-key", km)
	mustOpm(t, mirrorer, "sync", "origin", "full")
	mustOpm(t, mirrorer, "sync", "origin", "edge", "--include", "acme/web/*")
	if got, want := gitOut(t, full, "rev-parse", "main"), gitOut(t, origin, "rev-parse", "main"); got != want {
		t.Fatalf("the preserving mirror is at %s, origin at %s: commits were not copied as they are", got, want)
	}
	if msg := gitOut(t, edge, "log", "-1", "--format=%B", "main"); !strings.Contains(msg, "Opm-Synced-From: ") {
		t.Fatalf("a filtered mirror's commit does not name its source:\n%s", msg)
	}
	for _, c := range []struct {
		meta, blobs, trust, want string
	}{
		{full, bucket("fb"), fingerprint(t, kp), "tools web"},
		{edge, bucket("eb"), kmpub, "web"},
	} {
		reader := t.TempDir()
		mustOpm(t, reader, "remote", "add", "origin", "--meta", c.meta, "--blobs", c.blobs, "--trust", c.trust)
		mustOpm(t, reader, "sync")
		if out := mustOpm(t, reader, "ls", "acme").stdout; strings.Join(strings.Fields(out), " ") != c.want {
			t.Errorf("a reader of %s sees:\n%s", c.meta, out)
		}
	}
	// A reader of the edge that trusts the publisher's key instead is
	// refused: the mirror's commits are the mirror's.
	reader := t.TempDir()
	mustOpm(t, reader, "remote", "add", "origin", "--meta", edge, "--blobs", bucket("eb"), "--trust", fingerprint(t, kp))
	if r := syncOpm(t, reader, "sync"); r.code != 10 || !strings.Contains(r.stderr, "no commit before it is signed by "+fingerprint(t, kp)) {
		t.Fatalf("a reader of the edge pinning the publisher's key: exit %d: %s", r.code, r.stderr)
	}
}
