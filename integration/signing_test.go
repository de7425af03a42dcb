package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm/internal/opmtest"
)

// TestSignedCommits: with a signing key, every commit opm writes carries an
// SSH signature that the real git accepts — git verify-commit with an
// allowed-signers file — for ed25519, ECDSA and RSA keys, from a key file
// and from ssh-agent; a commit whose content was changed under its
// signature is rejected; a key that cannot be loaded refuses the commit
// rather than writing it unsigned. (opm wrote unsigned commits only.)
func TestSignedCommits(t *testing.T) {
	for _, prog := range []string{"ssh-keygen", "ssh-agent", "ssh-add"} {
		if _, err := exec.LookPath(prog); err != nil {
			opmtest.Unavailable(t, "no %s (scripts/deps.sh installs openssh-client): %v", prog, err)
		}
	}
	dir := t.TempDir()
	src := pkgDir(t, 93, 2, 100)
	keygen := func(name string, args ...string) (key, pub string) { return sshKey(t, dir, name, args...) }
	verify := func(home, pub, commit string) (string, error) {
		t.Helper()
		signers := filepath.Join(dir, "allowed_signers")
		must(t, os.WriteFile(signers, []byte("tess@example.org namespaces=\"git\" "+pub+"\n"), 0o644))
		out, err := exec.Command("git", "-C", filepath.Join(home, "meta.git"), "-c", "gpg.ssh.allowedSignersFile="+signers, "verify-commit", "-v", commit).CombinedOutput()
		return string(out), err
	}

	for _, kt := range [][]string{{"-t", "ed25519"}, {"-t", "ecdsa", "-b", "256"}, {"-t", "rsa", "-b", "2048"}} {
		t.Run(kt[1], func(t *testing.T) {
			home := t.TempDir()
			key, pub := keygen("key-"+kt[1], kt...)
			mustOpm(t, home, "config", "signing-key", key)
			mustOpm(t, home, "push", "acme/web/site:v1", src)
			mustOpm(t, home, "tag", "acme/web/site:v1", "acme/web/site:stable")
			for _, c := range []string{"main", "main~1"} {
				if out, err := verify(home, pub, c); err != nil || !strings.Contains(out, `Good "git" signature for tess@example.org`) {
					t.Fatalf("git verify-commit %s: %v\n%s", c, err, out)
				}
			}
			// The same signature over changed content: rejected.
			body, err := exec.Command("git", "-C", filepath.Join(home, "meta.git"), "cat-file", "commit", "main").Output()
			if err != nil {
				t.Fatal(err)
			}
			forged := bytes.Replace(body, []byte("tag acme/web/site:stable"), []byte("tag acme/web/site:evil"), 1)
			cmd := exec.Command("git", "-C", filepath.Join(home, "meta.git"), "hash-object", "-t", "commit", "-w", "--stdin")
			cmd.Stdin = bytes.NewReader(forged)
			id, err := cmd.Output()
			if err != nil || bytes.Equal(forged, body) {
				t.Fatalf("forge: %v", err)
			}
			if out, err := verify(home, pub, strings.TrimSpace(string(id))); err == nil {
				t.Fatalf("git verify-commit accepted a commit changed under its signature:\n%s", out)
			}
		})
	}

	// A key in ssh-agent, named by its public key; through the daemon too.
	key, pub := keygen("agent-key", "-t", "ed25519")
	sock := filepath.Join(dir, "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	must(t, agent.Start())
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	opmtest.Eventually(t, "ssh-agent to listen on "+sock, func() error { _, err := os.Stat(sock); return err })
	add := exec.Command("ssh-add", key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	home := t.TempDir()
	t.Setenv("SSH_AUTH_SOCK", sock)
	mustOpm(t, home, "config", "signing-key", key+".pub")
	mustOpm(t, home, "push", "acme/web/site:v1", src)
	if out, err := verify(home, pub, "main"); err != nil {
		t.Fatalf("git verify-commit of an agent-signed commit: %v\n%s", err, out)
	}
	mnt := mountDaemon(t, home)
	mustOpm(t, home, "push", "acme/web/site:v2", src) // carried out by the daemon, signed by the client's agent
	if out, err := verify(home, pub, "main"); err != nil {
		t.Fatalf("git verify-commit of a commit the daemon wrote: %v\n%s", err, out)
	}
	unmountAndWait(t, home, mnt)

	// No key to be had: the commit is refused, not written unsigned.
	t.Setenv("SSH_AUTH_SOCK", "")
	before := commitCount(t, home)
	r := syncOpm(t, home, "push", "acme/web/site:v3", src)
	wantCode(t, r, 2, "no ssh-agent to hold its private key")
	if commitCount(t, home) != before {
		t.Fatal("a push whose key could not sign made a commit")
	}
	wantCode(t, syncOpm(t, home, "config", "signing-key", filepath.Join(dir, "missing")), 2, "no such file or directory")
}
