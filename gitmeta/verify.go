package gitmeta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"

	"github.com/openpm/opm"
)

// Verifying a remote's history (docs/design.md §3, "Trust"): each commit
// after the last verified one must carry an SSH signature (git's gpgsig
// header, namespace "git") by a key that the allowed signers file of its
// parent allows at its time; the remote's main must descend from the last
// verified commit. A reader starts from a pinned key: the newest commit
// that key signed, being allowed to, is where verification begins, and
// history before it is taken as it is.

// ErrUntrusted is the kind of a refused history: an unsigned commit, a
// signature by a key not allowed, a forged signature, a rollback or a
// fork.
var ErrUntrusted = opm.ErrUntrusted

// TrustCheck is what a reader knows of a remote before a fetch.
type TrustCheck struct {
	// File is the path of the allowed signers file in the tree.
	File string
	// Pin is the fingerprint of the key the reader trusts (SHA256:…);
	// empty, the signer of the first signed head seen is pinned (trust on
	// first use).
	Pin string
	// Verified is the last verified commit; zero before the first.
	Verified plumbing.Hash
	// Name names the remote in messages.
	Name string
}

// TrustResult says what VerifyHistory found.
type TrustResult struct {
	// Signed: the remote signs its history (its head has allowed
	// signers); the rest is empty when it does not.
	Signed bool   `json:"signed"`
	Pin    string `json:"trusted_key,omitempty"`
	// FirstUse: Pin was chosen now, on first use (check it with the
	// publisher).
	FirstUse bool `json:"first_use,omitempty"`
	// Signer and Principal signed the head.
	Signer    string `json:"signer,omitempty"`
	Principal string `json:"principal,omitempty"`
	// Commits is how many commits were verified.
	Commits int `json:"verified_commits"`
}

// VerifyHistory verifies head, a commit fetched from the remote c names,
// against what the reader knew (c). A refusal is an ErrUntrusted error
// naming the commit and why, with nothing recorded: the caller takes head
// only when it passes, and records head as the last verified commit.
func (r *Repo) VerifyHistory(ctx context.Context, c TrustCheck, head plumbing.Hash) (TrustResult, error) {
	return newVerifier(r, c).run(ctx, head)
}

type verifier struct {
	r       *Repo
	c       TrustCheck
	signers map[plumbing.Hash]AllowedSigners // parsed files by blob
	// commits read, by hash: each commit is read as itself and again as
	// its child's parent (and a first use walks back, then verifies).
	commits map[plumbing.Hash]*signedCommit
}

func newVerifier(r *Repo, c TrustCheck) *verifier {
	return &verifier{r: r, c: c, signers: map[plumbing.Hash]AllowedSigners{}, commits: map[plumbing.Hash]*signedCommit{}}
}

// signedCommit is a commit as its signature covers it.
type signedCommit struct {
	hash    plumbing.Hash
	parents []plumbing.Hash
	tree    plumbing.Hash
	when    time.Time // the committer's time
	payload []byte    // the commit object without its gpgsig header
	sig     []byte    // the armored signature; nil when unsigned
}

func (v *verifier) run(ctx context.Context, head plumbing.Hash) (TrustResult, error) {
	switch {
	case head.IsZero():
		return TrustResult{}, nil
	case head == v.c.Verified && v.c.Pin != "":
		return TrustResult{Signed: true, Pin: v.c.Pin}, nil // nothing new: a no-op sync reads nothing
	}
	tip, err := v.commit(head)
	if err != nil {
		return TrustResult{}, err
	}
	headSigners, err := v.allowedAt(tip)
	if err != nil {
		return TrustResult{}, err
	}
	if headSigners == nil {
		if v.c.Pin == "" {
			return TrustResult{}, nil // an unsigned registry, and a reader that pinned nothing
		}
		return TrustResult{}, v.refuse(head, "has no allowed signers file (%s): the registry does not sign, yet %s trusts %s", v.c.File, v.c.Name, v.c.Pin)
	}
	res := TrustResult{Signed: true, Pin: v.c.Pin}
	// The commits to verify, newest first, back to the last verified one
	// (or, on first use, to the anchor).
	var chain []*signedCommit
	switch {
	case !v.c.Verified.IsZero() && v.c.Pin != "":
		chain, err = v.since(ctx, tip)
	default:
		chain, err = v.fromAnchor(ctx, tip, &res)
	}
	if err != nil {
		return TrustResult{}, err
	}
	for i, sc := range chain {
		if err := ctx.Err(); err != nil {
			return TrustResult{}, err
		}
		var parent *signedCommit
		if i+1 < len(chain) {
			parent = chain[i+1]
		} else if len(sc.parents) > 0 {
			if parent, err = v.commit(sc.parents[0]); err != nil {
				return TrustResult{}, err
			}
		}
		s, err := v.verifyOne(sc, parent)
		if err != nil {
			return TrustResult{}, err
		}
		if i == 0 {
			res.Signer, res.Principal = s.Fingerprint(), s.Principals[0]
		}
	}
	res.Commits = len(chain)
	if res.Signer == "" { // head is the anchor or the last verified commit
		s, err := v.signerOf(tip)
		if err == nil {
			res.Signer, res.Principal = s.Fingerprint(), s.Principals[0]
		} else if !isRefusal(err) {
			return TrustResult{}, err
		}
	}
	return res, nil
}

// since lists the commits from tip back to the last verified one
// (excluded), following first parents; a tip that does not descend from it
// is a rollback or a fork.
func (v *verifier) since(ctx context.Context, tip *signedCommit) ([]*signedCommit, error) {
	var chain []*signedCommit
	sc := tip
	for sc.hash != v.c.Verified {
		if len(sc.parents) != 1 {
			break // the first commit, or a merge
		}
		chain = append(chain, sc)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		if sc, err = v.commit(sc.parents[0]); err != nil {
			return nil, err
		}
	}
	if sc.hash == v.c.Verified {
		return chain, nil
	}
	last := shortHash(v.c.Verified)
	if _, older, err := v.r.Ahead(ctx, tip.hash, v.c.Verified); err != nil {
		return nil, err
	} else if older {
		return nil, v.refuse(tip.hash, "is older than %s, the last commit verified: a rollback", last)
	}
	if len(sc.parents) > 1 {
		return nil, v.refuse(sc.hash, "is a merge: a signed registry's history is one line of commits")
	}
	return nil, v.refuse(tip.hash, "does not descend from %s, the last commit verified: history was rewritten", last)
}

// fromAnchor lists the commits from tip back to the anchor (excluded): the
// newest commit the pinned key signed while allowed to. Without a pin, the
// anchor is tip, and its signer is pinned.
func (v *verifier) fromAnchor(ctx context.Context, tip *signedCommit, res *TrustResult) ([]*signedCommit, error) {
	if v.c.Pin == "" {
		s, err := v.signerOf(tip)
		if err != nil {
			return nil, err
		}
		res.Pin, res.FirstUse = s.Fingerprint(), true
		return nil, nil
	}
	var chain []*signedCommit
	for sc := tip; ; {
		// Only a commit the pinned key signed is verified here; the others
		// are verified once, in the chain.
		if keyOf(sc) == v.c.Pin {
			s, err := v.signerOf(sc)
			if err == nil && s.Fingerprint() == v.c.Pin {
				return chain, nil
			}
			if err != nil && !isRefusal(err) {
				return nil, err
			}
		}
		if len(sc.parents) == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		chain = append(chain, sc)
		var err error
		if sc, err = v.commit(sc.parents[0]); err != nil {
			return nil, err
		}
	}
	return nil, v.refuse(tip.hash, "and no commit before it is signed by %s, the key this home trusts for %s, while allowed to sign", v.c.Pin, v.c.Name)
}

// signerOf verifies sc against the allowed signers of its parent, or its
// own when it introduces the file (the first signed commit).
func (v *verifier) signerOf(sc *signedCommit) (AllowedSigner, error) {
	var parent *signedCommit
	if len(sc.parents) > 0 {
		var err error
		if parent, err = v.commit(sc.parents[0]); err != nil {
			return AllowedSigner{}, err
		}
		if a, err := v.allowedAt(parent); err != nil {
			return AllowedSigner{}, err
		} else if a != nil {
			return v.verifyOne(sc, parent)
		}
	}
	own, err := v.allowedAt(sc)
	if err != nil {
		return AllowedSigner{}, err
	}
	return v.check(sc, own, sc.when)
}

// verifyOne verifies sc against the allowed signers of parent.
func (v *verifier) verifyOne(sc, parent *signedCommit) (AllowedSigner, error) {
	if parent == nil {
		return AllowedSigner{}, v.refuse(sc.hash, "has no parent to say who may sign it")
	}
	allowed, err := v.allowedAt(parent)
	if err != nil {
		return AllowedSigner{}, err
	}
	if allowed == nil {
		return AllowedSigner{}, v.refuse(sc.hash, "follows %s, which has no allowed signers file (%s): signing was turned off", shortHash(parent.hash), v.c.File)
	}
	when := sc.when
	if parent.when.After(when) {
		when = parent.when // a signature cannot be dated back before its parent
	}
	return v.check(sc, allowed, when)
}

// check verifies sc's signature by a key allowed at when.
func (v *verifier) check(sc *signedCommit, allowed AllowedSigners, when time.Time) (AllowedSigner, error) {
	if sc.sig == nil {
		return AllowedSigner{}, v.refuse(sc.hash, "is not signed")
	}
	sig, err := sshsig.Unarmor(sc.sig)
	if err != nil {
		return AllowedSigner{}, v.refuse(sc.hash, "has a signature that is not an SSH signature: %v", err)
	}
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	s, err := allowed.Allows(sig.PublicKey, when)
	if err != nil {
		return AllowedSigner{}, v.refuse(sc.hash, "is signed by %s: %v at its parent", fp, err)
	}
	if err := sshsig.Verify(bytes.NewReader(sc.payload), sig, sig.PublicKey, sig.HashAlgorithm, "git"); err != nil {
		return AllowedSigner{}, v.refuse(sc.hash, "has a signature by %s that does not match its content (forged or altered): %v", fp, err)
	}
	return s, nil
}

// allowedAt parses the allowed signers file of sc's tree; nil when it has
// none. A file that does not parse is a refusal.
func (v *verifier) allowedAt(sc *signedCommit) (AllowedSigners, error) {
	v.r.mu.Lock()
	h, err := v.r.hashAt(sc.tree, []string{v.c.File})
	v.r.mu.Unlock()
	if errors.Is(err, opm.ErrNotFound) || err == nil && h.IsZero() {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if a, ok := v.signers[h]; ok {
		return a, nil
	}
	v.r.mu.Lock()
	b, err := v.r.blob(h, MaxSignersSize)
	v.r.mu.Unlock()
	if err != nil {
		return nil, v.refuse(sc.hash, "has an allowed signers file that cannot be read: %v", err)
	}
	a, err := ParseAllowedSigners(b)
	if err != nil {
		return nil, v.refuse(sc.hash, "has an allowed signers file that does not parse: %v", err)
	}
	if a == nil {
		a = AllowedSigners{} // present and empty: nobody may sign
	}
	v.signers[h] = a
	return a, nil
}

func (v *verifier) refuse(h plumbing.Hash, format string, args ...any) error {
	return &refusal{name: v.c.Name, commit: h, why: fmt.Sprintf(format, args...)}
}

// refusal is why a commit does not verify: an ErrUntrusted error.
type refusal struct {
	name   string
	commit plumbing.Hash
	why    string
}

func (e *refusal) Error() string {
	return fmt.Sprintf("%s's commit %s %s", e.name, shortHash(e.commit), e.why)
}

func (e *refusal) Unwrap() error { return ErrUntrusted }

// isRefusal reports whether err says why a commit does not verify (nil
// does not), rather than that it could not be checked.
func isRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r)
}

// keyOf is the fingerprint of the key that signed sc, "" when it is not
// signed with an SSH signature; the signature is not verified.
func keyOf(sc *signedCommit) string {
	if sc.sig == nil {
		return ""
	}
	sig, err := sshsig.Unarmor(sc.sig)
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(sig.PublicKey)
}

// CommitSignature says who signed a commit and whether the allowed signers
// of its parent (of itself, for the commit that adds them) allow it.
type CommitSignature struct {
	// Status is "verified" (by a key allowed at its parent), "refused"
	// (Reason says why: what a reader would refuse), "unverified" (signed,
	// in a registry without allowed signers) or "unsigned" (likewise).
	Status    string `json:"status"`
	Key       string `json:"key,omitempty"` // the signer's fingerprint
	Principal string `json:"principal,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// CheckSignatures checks the signature of each commit of hs (opm log)
// against the allowed signers file at the path file.
func (r *Repo) CheckSignatures(ctx context.Context, hs []plumbing.Hash, file string) ([]CommitSignature, error) {
	v := newVerifier(r, TrustCheck{File: file})
	out := make([]CommitSignature, len(hs))
	for i, h := range hs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sc, err := v.commit(h)
		if err != nil {
			return nil, err
		}
		var allowed AllowedSigners
		if len(sc.parents) > 0 {
			parent, err := v.commit(sc.parents[0])
			if err != nil {
				return nil, err
			}
			if allowed, err = v.allowedAt(parent); err != nil {
				return nil, err
			}
		}
		if allowed == nil {
			if allowed, err = v.allowedAt(sc); err != nil {
				return nil, err
			}
		}
		if allowed == nil {
			out[i].Status = "unsigned"
			if sig, err := sshsig.Unarmor(sc.sig); err == nil {
				out[i].Status, out[i].Key = "unverified", ssh.FingerprintSHA256(sig.PublicKey)
			}
			continue
		}
		s, err := v.signerOf(sc)
		var ref *refusal
		switch {
		case err == nil:
			out[i] = CommitSignature{Status: "verified", Key: s.Fingerprint(), Principal: s.Principals[0]}
		case errors.As(err, &ref):
			out[i] = CommitSignature{Status: "refused", Reason: ref.why}
			if sig, err := sshsig.Unarmor(sc.sig); err == nil {
				out[i].Key = ssh.FingerprintSHA256(sig.PublicKey)
			}
		default:
			return nil, err
		}
	}
	return out, nil
}

// commit reads h as its signature covers it: the raw object without its
// gpgsig header, as git verifies it.
func (v *verifier) commit(h plumbing.Hash) (*signedCommit, error) {
	if sc, ok := v.commits[h]; ok {
		return sc, nil
	}
	sc, err := v.readCommit(h)
	if err == nil {
		v.commits[h] = sc
	}
	return sc, err
}

func (v *verifier) readCommit(h plumbing.Hash) (*signedCommit, error) {
	v.r.mu.Lock()
	defer v.r.mu.Unlock()
	o, err := v.r.object(plumbing.CommitObject, h)
	if err != nil {
		return nil, err
	}
	if o.Size() > MaxObjectSize {
		return nil, opm.Errorf(opm.ErrInvalid, "commit %s: %d bytes", h, o.Size())
	}
	rd, err := o.Reader()
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(rd)
	rd.Close()
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	c, err := object.DecodeCommit(v.r.st, o)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	sc := &signedCommit{hash: h, parents: c.ParentHashes, tree: c.TreeHash, when: c.Committer.When}
	sc.payload, sc.sig = splitSignature(raw)
	return sc, nil
}

// splitSignature takes the gpgsig header (and its continuation lines) out
// of a raw commit: what is left is what the signature covers.
func splitSignature(raw []byte) (payload, sig []byte) {
	end := bytes.Index(raw, []byte("\n\n")) + 1 // the headers, each line with its newline
	if end == 0 {
		end = len(raw)
	}
	var out, s []byte
	in := false
	for rest := raw[:end]; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("gpgsig ")) && sig == nil && s == nil:
			in, s = true, append(s, line[len("gpgsig "):]...)
		case in && len(line) > 0 && line[0] == ' ':
			s = append(s, line[1:]...)
		default:
			in = false
			out = append(out, line...)
		}
	}
	return append(out, raw[end:]...), s
}
