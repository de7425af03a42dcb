package gitmeta

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"

	"github.com/openpm/opm"
)

const signersFile = ".allowed_signers"

func newKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fp(k ssh.Signer) string { return ssh.FingerprintSHA256(k.PublicKey()) }

// signerLine is an allowed signers line for k.
func signerLine(who string, k ssh.Signer, options string) string {
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.PublicKey())))
	if options != "" {
		return who + " " + options + " " + key + "\n"
	}
	return who + " " + key + "\n"
}

// commitSigned commits changes signed by k (unsigned when k is nil) at when.
func commitSigned(t testing.TB, r *Repo, k ssh.Signer, when time.Time, changes ...Change) plumbing.Hash {
	t.Helper()
	a := tester
	a.When = when
	if k != nil {
		a.Signer = sshSigner{k}
	}
	h, _, err := r.Update(context.Background(), a, func(*Snapshot) ([]Change, Message, error) {
		return changes, Message{Subject: "change"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// writeCommitObject writes c as it is (a hostile origin's commit) and
// returns its hash; main is not moved.
func writeCommitObject(t testing.TB, r *Repo, c *object.Commit) plumbing.Hash {
	t.Helper()
	var o plumbing.MemoryObject
	if err := c.Encode(&o); err != nil {
		t.Fatal(err)
	}
	rd, _ := o.Reader()
	data, _ := io.ReadAll(rd)
	h := plumbing.ComputeHash(plumbing.CommitObject, data)
	if _, err := writeLoose(r.path, h, plumbing.CommitObject, data); err != nil {
		t.Fatal(err)
	}
	return h
}

func readCommit(t testing.TB, r *Repo, h plumbing.Hash) *object.Commit {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commit(h)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyHistory(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d int) time.Time { return t0.Add(time.Duration(d) * time.Hour) }
	check := TrustCheck{File: signersFile, Name: "origin"}
	verify := func(c TrustCheck, head plumbing.Hash) (TrustResult, error) {
		return r.VerifyHistory(ctx, c, head)
	}
	refused := func(t *testing.T, c TrustCheck, head plumbing.Hash, want string) {
		t.Helper()
		_, err := verify(c, head)
		if err == nil || !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), want) {
			t.Fatalf("verify %s: got %v, want a refusal saying %q", shortHash(head), err, want)
		}
	}

	// An unsigned registry, read by a reader that pinned nothing.
	c0 := commitSigned(t, r, nil, at(0), set("a/b/c/tags/v1.json", "1"))
	if res, err := verify(check, c0); err != nil || res.Signed {
		t.Fatalf("unsigned registry: %+v, %v", res, err)
	}
	// ... and one that pinned a key: refused.
	pinned := check
	pinned.Pin = fp(k1)
	refused(t, pinned, c0, "has no allowed signers file")

	// Signing turned on at one commit, signed by a key it lists.
	c1 := commitSigned(t, r, k1, at(1), set(signersFile, signerLine("ci@example.org", k1, `namespaces="git"`)))
	res, err := verify(check, c1)
	if err != nil || !res.Signed || !res.FirstUse || res.Pin != fp(k1) || res.Principal != "ci@example.org" {
		t.Fatalf("trust on first use: %+v, %v", res, err)
	}
	c2 := commitSigned(t, r, k1, at(2), set("a/b/c/tags/v2.json", "2"))
	// A pinned reader starts at the newest commit the pinned key signed.
	if res, err := verify(pinned, c2); err != nil || res.Signer != fp(k1) || res.Commits != 0 {
		t.Fatalf("pinned first use: %+v, %v", res, err)
	}
	pinned.Verified = c1
	if res, err := verify(pinned, c2); err != nil || res.Commits != 1 {
		t.Fatalf("one new commit: %+v, %v", res, err)
	}
	other := check
	other.Pin = fp(k3)
	refused(t, other, c2, "no commit before it is signed by "+fp(k3))

	pinned.Verified = c2
	head := c2
	// Each refused case, on top of c2 (main is moved back after each).
	reset := func() {
		t.Helper()
		cur, _ := r.Head()
		if err := r.SetHead(ctx, cur, head); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("unsigned", func(t *testing.T) {
		defer reset()
		refused(t, pinned, commitSigned(t, r, nil, at(3), set("a/b/c/tags/v3.json", "3")), "is not signed")
	})
	t.Run("unknown key", func(t *testing.T) {
		defer reset()
		refused(t, pinned, commitSigned(t, r, k2, at(3), set("a/b/c/tags/v3.json", "3")), "is signed by "+fp(k2)+": not an allowed signer")
	})
	t.Run("a key adding itself", func(t *testing.T) {
		defer reset()
		both := signerLine("ci@example.org", k1, "") + signerLine("eve@example.org", k3, "")
		refused(t, pinned, commitSigned(t, r, k3, at(3), set(signersFile, both)), "not an allowed signer")
	})
	t.Run("forged", func(t *testing.T) {
		defer reset()
		good := commitSigned(t, r, k1, at(3), set("a/b/c/tags/v3.json", "3"))
		c := readCommit(t, r, good)
		c.Message = "change\n\nsomething else\n"
		refused(t, pinned, writeCommitObject(t, r, c), "does not match its content")
		// Another commit's tree under the same signature.
		c = readCommit(t, r, good)
		c.TreeHash = readCommit(t, r, c1).TreeHash
		refused(t, pinned, writeCommitObject(t, r, c), "does not match its content")
	})
	t.Run("rollback", func(t *testing.T) {
		refused(t, pinned, c1, "is older than "+shortHash(c2)+", the last commit verified: a rollback")
	})
	t.Run("fork", func(t *testing.T) {
		defer reset()
		if err := r.SetHead(ctx, head, c1); err != nil {
			t.Fatal(err)
		}
		refused(t, pinned, commitSigned(t, r, k1, at(3), set("a/b/c/tags/v9.json", "9")), "does not descend from "+shortHash(c2))
	})
	t.Run("merge", func(t *testing.T) {
		c := readCommit(t, r, c2)
		c.ParentHashes = append(c.ParentHashes, c0)
		c.PGPSignature = ""
		refused(t, pinned, writeCommitObject(t, r, c), "is a merge")
	})

	// Rotation: k1 adds k2; k2 signs; k2 revokes k1; k1 is refused after.
	c3 := commitSigned(t, r, k1, at(3), set(signersFile, signerLine("ci@example.org", k1, "")+signerLine("ci2@example.org", k2, "")))
	c4 := commitSigned(t, r, k2, at(4), set("a/b/c/tags/v4.json", "4"))
	c5 := commitSigned(t, r, k2, at(5), set(signersFile, signerLine("ci2@example.org", k2, `valid-before="20260101100000Z"`)+signerLine("release@example.org", k3, "")))
	if res, err := verify(pinned, c5); err != nil || res.Commits != 3 || res.Principal != "ci2@example.org" {
		t.Fatalf("rotation: %+v, %v", res, err)
	}
	pinned.Verified = c5
	head = c5
	t.Run("revoked", func(t *testing.T) {
		defer reset()
		refused(t, pinned, commitSigned(t, r, k1, at(6), set("a/b/c/tags/v6.json", "6")), "not an allowed signer")
	})
	t.Run("expired", func(t *testing.T) {
		defer reset()
		refused(t, pinned, commitSigned(t, r, k2, at(11), set("a/b/c/tags/v6.json", "6")), "expired at 2026-01-01T10:00:00Z")
		reset()
		// Dated back before its parent: judged at its parent's time.
		c6 := commitSigned(t, r, k3, at(11), set("a/b/c/tags/v6.json", "6"))
		c7 := commitSigned(t, r, k3, at(12), set("a/b/c/tags/v7.json", "7"))
		pinned := pinned
		pinned.Verified = c6
		if _, err := verify(pinned, c7); err != nil {
			t.Fatal(err)
		}
		refused(t, pinned, writeCommitObject(t, r, backdated(t, r, k2, c7, at(9))), "expired")
	})
	// A reader pinning the first key still follows the rotated history.
	fresh := check
	fresh.Pin = fp(k1)
	if res, err := verify(fresh, c5); err != nil || res.Commits != 2 {
		t.Fatalf("pin of a rotated-out key, from the start: %+v, %v", res, err)
	}
	_, _ = c3, c4
	// Turning signing off, even by an allowed key, is refused to a pinned
	// reader: it follows no unsigned registry.
	c8 := commitSigned(t, r, k2, at(7), del(signersFile))
	pinned.Verified = c5
	refused(t, pinned, c8, "has no allowed signers file")
}

// backdated is a commit on c's parent with c's tree, dated when and signed by k.
func backdated(t testing.TB, r *Repo, k ssh.Signer, c plumbing.Hash, when time.Time) *object.Commit {
	t.Helper()
	old := readCommit(t, r, c)
	nc := &object.Commit{Author: old.Author, Committer: old.Committer, Message: old.Message, TreeHash: old.TreeHash, ParentHashes: old.ParentHashes}
	nc.Author.When, nc.Committer.When = when, when
	var unsigned plumbing.MemoryObject
	if err := nc.EncodeWithoutSignature(&unsigned); err != nil {
		t.Fatal(err)
	}
	rd, _ := unsigned.Reader()
	data, _ := io.ReadAll(rd)
	sig, err := sshSigner{k}.SignCommit(data)
	if err != nil {
		t.Fatal(err)
	}
	nc.PGPSignature = sig
	return nc
}

func TestParseAllowedSigners(t *testing.T) {
	k := newKey(t)
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.PublicKey())))
	good := fmt.Sprintf("# comment\n\nci@example.org,\"bob\" %s a comment\n\"a b\" namespaces=\"git,file\",valid-after=\"20260101\" %s\n", key, key)
	a, err := ParseAllowedSigners([]byte(good))
	if err != nil || len(a) != 2 || a[1].Principals[0] != "a b" || a[1].Namespaces[1] != "file" || a[1].ValidAfter.IsZero() || a[1].Line != 4 {
		t.Fatalf("parse: %+v, %v", a, err)
	}
	if _, ok := a.Find(fp(k)); !ok {
		t.Fatal("Find by fingerprint")
	}
	for _, bad := range []string{
		"ci@example.org",
		"ci@example.org ssh-ed25519 notbase64",
		`ci@example.org cert-authority ` + key,
		`ci@example.org valid-before="2026" ` + key,
		`ci@example.org color="red" ` + key,
		`"ci@example.org ` + key,
	} {
		if _, err := ParseAllowedSigners([]byte(bad + "\n")); !errors.Is(err, opm.ErrInvalid) || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: got %v, want a refusal naming line 1", bad, err)
		}
	}
	for _, id := range []string{fp(k), key} {
		if got, err := KeyFingerprint(id); err != nil || got != fp(k) {
			t.Errorf("KeyFingerprint(%q) = %q, %v", id, got, err)
		}
	}
	if _, err := KeyFingerprint("SHA256:short"); err == nil {
		t.Error("a short fingerprint was taken")
	}
}

// TestCheckSignatures: opm log's signature column, commit by commit.
func TestCheckSignatures(t *testing.T) {
	r := newRepo(t)
	k1, k2 := newKey(t), newKey(t)
	now := time.Now()
	c0 := commitSigned(t, r, nil, now, set("a/b/c/tags/v0.json", "0"))
	c1 := commitSigned(t, r, k2, now, set("a/b/c/tags/v1.json", "1"))
	c2 := commitSigned(t, r, k1, now, set(signersFile, signerLine("ci@example.org", k1, "")))
	c3 := commitSigned(t, r, k1, now, set("a/b/c/tags/v3.json", "3"))
	c4 := commitSigned(t, r, k2, now, set("a/b/c/tags/v4.json", "4"))
	c5 := commitSigned(t, r, nil, now, set("a/b/c/tags/v5.json", "5"))
	got, err := r.CheckSignatures(context.Background(), []plumbing.Hash{c0, c1, c2, c3, c4, c5}, signersFile)
	if err != nil {
		t.Fatal(err)
	}
	want := []CommitSignature{
		{Status: "unsigned"},
		{Status: "unverified", Key: fp(k2)},
		{Status: "verified", Key: fp(k1), Principal: "ci@example.org"},
		{Status: "verified", Key: fp(k1), Principal: "ci@example.org"},
		{Status: "refused", Key: fp(k2), Reason: "is signed by " + fp(k2) + ": not an allowed signer at its parent"},
		{Status: "refused", Reason: "is not signed"},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("commit %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestForgetPackedRefs: forgetting a remote's verified and tracking refs
// removes them when git gc has packed them too (they were only removed as
// loose files, so a re-pinned key kept the old verification).
func TestForgetPackedRefs(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	h := commit(t, r, "one", set("a", "1"))
	if err := r.SetVerified(ctx, "origin", h); err != nil {
		t.Fatal(err)
	}
	if err := r.setRef(ctx, TrackingRef("up"), h); err != nil {
		t.Fatal(err)
	}
	if err := r.SetVerified(ctx, "up", h); err != nil {
		t.Fatal(err)
	}
	git(t, r.path, "pack-refs", "--all")
	if err := r.ForgetVerified(ctx, "origin"); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveTracking(ctx, "up"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []plumbing.ReferenceName{VerifiedRef("origin"), TrackingRef("up"), VerifiedRef("up")} {
		if got, err := readRef(r.path, name); err != nil || !got.IsZero() {
			t.Errorf("%s after removal: %s, %v", name, got, err)
		}
	}
	if got, err := readRef(r.path, "refs/heads/main"); err != nil || got != h {
		t.Errorf("main: %s, %v", got, err)
	}
}
