package registry

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// The registry's allowed signers (docs/design.md §3, "Trust"): the file
// layout.AllowedSigners at the top of the metadata, changed by opm signers
// add and rm as commits like any other (published to origin), each signed
// by a key the file allowed before it.

// Signer is one allowed signer, as opm signers ls shows it.
type Signer struct {
	Principals  []string   `json:"principals"`
	Fingerprint string     `json:"fingerprint"`
	Key         string     `json:"key"` // authorized_keys form: type and base64
	Namespaces  []string   `json:"namespaces,omitempty"`
	ValidAfter  *time.Time `json:"valid_after,omitempty"`
	ValidBefore *time.Time `json:"valid_before,omitempty"`
}

// Signers lists the allowed signers at the head; none for a registry that
// does not sign.
func (r *Registry) Signers() ([]Signer, error) {
	b, err := r.signersFile()
	if err != nil || b == nil {
		return nil, err
	}
	a, err := gitmeta.ParseAllowedSigners(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", layout.AllowedSigners, err)
	}
	out := make([]Signer, 0, len(a))
	for _, s := range a {
		v := Signer{Principals: s.Principals, Fingerprint: s.Fingerprint(), Namespaces: s.Namespaces,
			Key: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.Key)))}
		if !s.ValidAfter.IsZero() {
			v.ValidAfter = &s.ValidAfter
		}
		if !s.ValidBefore.IsZero() {
			v.ValidBefore = &s.ValidBefore
		}
		out = append(out, v)
	}
	return out, nil
}

// signersFile reads the allowed signers file at the head; nil when there is
// none.
func (r *Registry) signersFile() ([]byte, error) {
	head, err := r.meta.Head()
	if err != nil {
		return nil, err
	}
	s, err := r.meta.Snapshot(head)
	if err != nil {
		return nil, err
	}
	return readTopFile(s, layout.AllowedSigners)
}

// SignerChange says what AddSigner or RemoveSigner did.
type SignerChange struct {
	Fingerprints []string `json:"fingerprints"`
	Commit       string   `json:"commit"`
	Committed    bool     `json:"committed"`
}

// AddSigner allows key (an authorized_keys line: ssh-ed25519 AAAA… [comment])
// to sign for principal, from validAfter and before validBefore when they
// are not zero. The first signer turns signing on: that commit must be
// signed by the key it adds (opm config signing-key); every later change by
// a key the file allowed before it.
func (r *Registry) AddSigner(ctx context.Context, principal, key string, validAfter, validBefore time.Time) (*SignerChange, error) {
	if principal == "" || strings.ContainsAny(principal, " \t\",\n") || opm.CheckName("principal", principal) != nil {
		return nil, opm.Errorf(opm.ErrInvalid, "signers add: principal %q: one word, an e-mail address or a name, without spaces, commas or quotes", opm.Printable(principal))
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return nil, opm.Errorf(opm.ErrInvalid, "signers add: not an SSH public key (ssh-ed25519 AAAA…, or the .pub file of a key)")
	}
	opts := []string{`namespaces="git"`}
	if !validAfter.IsZero() {
		opts = append(opts, `valid-after="`+validAfter.UTC().Format("20060102150405")+`Z"`)
	}
	if !validBefore.IsZero() {
		opts = append(opts, `valid-before="`+validBefore.UTC().Format("20060102150405")+`Z"`)
	}
	line := principal + " " + strings.Join(opts, ",") + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment = strings.TrimSpace(comment); comment != "" && opm.CheckName("comment", comment) == nil && !strings.ContainsAny(comment, "\n\r") {
		line += " " + comment
	}
	fp := ssh.FingerprintSHA256(pub)
	res, err := r.changeSigners(ctx, "signers: add "+principal+" "+fp, func(cur []byte, a gitmeta.AllowedSigners) ([]byte, error) {
		if s, ok := a.Find(fp); ok {
			return nil, opm.Errorf(opm.ErrExists, "%s is already an allowed signer (line %d of %s, for %s); opm signers rm it first to change it", fp, s.Line, layout.AllowedSigners, strings.Join(s.Principals, ","))
		}
		if cur == nil {
			cur = []byte("# Who may sign this registry's commits (git's allowed_signers format; opm signers).\n")
		}
		if len(cur) > 0 && cur[len(cur)-1] != '\n' {
			cur = append(cur, '\n')
		}
		return append(cur, line+"\n"...), nil
	})
	if res != nil {
		res.Fingerprints = []string{fp}
	}
	return res, err
}

// RemoveSigner takes out the signers id names: a principal, a key's
// fingerprint or a public key. The last one is not taken out (nobody could
// sign again): a registry does not turn signing off by opm.
func (r *Registry) RemoveSigner(ctx context.Context, id string) (*SignerChange, error) {
	fp, fpErr := gitmeta.KeyFingerprint(id)
	var gone []string
	res, err := r.changeSigners(ctx, "signers: rm "+id, func(cur []byte, a gitmeta.AllowedSigners) ([]byte, error) {
		drop := map[int]bool{}
		gone = gone[:0]
		for _, s := range a {
			if fpErr == nil && s.Fingerprint() == fp || slices.Contains(s.Principals, id) {
				drop[s.Line] = true
				gone = append(gone, s.Fingerprint())
			}
		}
		switch {
		case len(drop) == 0:
			return nil, opm.Errorf(opm.ErrNotFound, "signers rm: no allowed signer %s (opm signers ls lists them)", opm.Printable(id))
		case len(drop) == len(a):
			return nil, opm.Errorf(opm.ErrInvalid, "signers rm: %s is every allowed signer: nobody could sign again; add the new key first", opm.Printable(id))
		}
		var out []byte
		for n, line := range bytes.SplitAfter(cur, []byte("\n")) {
			if !drop[n+1] {
				out = append(out, line...)
			}
		}
		return out, nil
	})
	if res != nil {
		res.Fingerprints = gone
	}
	return res, err
}

// changeSigners makes edit of the allowed signers file one commit (of the
// file as the head holds it: a change made meanwhile by another writer is a
// conflict), published to origin in a home with one.
func (r *Registry) changeSigners(ctx context.Context, subject string, edit func(cur []byte, a gitmeta.AllowedSigners) ([]byte, error)) (*SignerChange, error) {
	if o, ok, err := r.origin(); err != nil {
		return nil, err
	} else if ok {
		if _, err := r.followOrigin(ctx, o, false); err != nil {
			return nil, err
		}
	}
	cur, err := r.signersFile()
	if err != nil {
		return nil, err
	}
	a, err := gitmeta.ParseAllowedSigners(cur)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", layout.AllowedSigners, err)
	}
	body, err := edit(cur, a)
	if err != nil {
		return nil, err
	}
	if _, err := gitmeta.ParseAllowedSigners(body); err != nil {
		return nil, err
	}
	res, err := r.change(ctx, tagChange{what: layout.AllowedSigners, paths: []string{layout.AllowedSigners}, body: body, subject: subject,
		check: func(s *gitmeta.Snapshot) error {
			now, err := readTopFile(s, layout.AllowedSigners)
			if err != nil {
				return err
			}
			if !bytes.Equal(now, cur) {
				return opm.Errorf(opm.ErrConflict, "%s was changed by another writer meanwhile: run the command again", layout.AllowedSigners)
			}
			return nil
		}}, nil, false, "")
	if err != nil {
		return nil, err
	}
	return &SignerChange{Commit: res.commit.String(), Committed: res.committed}, nil
}

// TrustRemote pins key (a fingerprint or a public key) as the root of trust
// in the remote name's metadata, and forgets what was verified: the next
// fetch verifies from the newest commit that key signed. An empty key
// unpins: the next signed head is trusted on first use.
func (r *Registry) TrustRemote(name, key string) (Remote, error) {
	rm, err := r.Remote(name)
	if err != nil {
		return rm, err
	}
	if key != "" {
		if key, err = gitmeta.KeyFingerprint(key); err != nil {
			return rm, err
		}
	}
	// Forget first: a crash between the two leaves the old pin with
	// nothing verified (verified again from its newest signed commit),
	// never the new pin with the old verification.
	if err := r.forgetVerified(name); err != nil {
		return rm, err
	}
	err = r.updateConfig(func(cfg *gitmeta.Config) error {
		if key == "" {
			return cfg.Unset(remoteKey(name, "trust"), nil)
		}
		return cfg.Set(remoteKey(name, "trust"), key)
	})
	if err != nil {
		return rm, err
	}
	rm.Trust = key
	return rm, nil
}

// forgetVerified forgets what of the remote name's main was verified, in
// this home's metadata and in the scratch repository of every mirror
// (where it was verified as a mirror's source).
func (r *Registry) forgetVerified(name string) error {
	ctx := context.Background()
	if err := r.meta.ForgetVerified(ctx, name); err != nil {
		return err
	}
	scratch, err := filepath.Glob(r.mirrorScratch("*"))
	if err != nil {
		return err
	}
	for _, dir := range scratch {
		repo, err := gitmeta.Open(dir)
		if err != nil {
			return err
		}
		err = repo.ForgetVerified(ctx, name)
		if cerr := repo.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("mirror %s: %w", filepath.Base(dir), err)
		}
	}
	return nil
}
