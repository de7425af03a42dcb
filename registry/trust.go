package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// Trust (docs/design.md §3, "Trust"): a remote whose metadata is signed is
// followed only as far as its commits verify. The reader's root of trust is
// remote.<name>.trust in the home's config, a key's fingerprint (opm
// remote add --trust, or the signer of the first signed head seen, pinned
// on first use); the last commit verified is the ref
// refs/remotes/<name>/verified of the repository the remote is fetched
// into.

// Trust says what verifying a remote's history found.
type Trust = gitmeta.TrustResult

// CommitSignature says who signed a commit and whether the registry's
// allowed signers allow it (opm log, the pages).
type CommitSignature = gitmeta.CommitSignature

// TrustState is the last verification of a remote, for opm status and the
// mount's status file.
type TrustState struct {
	Remote   string    `json:"remote"`
	Key      string    `json:"trusted_key,omitempty"`
	Verified string    `json:"verified,omitempty"` // the last commit verified
	At       time.Time `json:"at,omitzero"`
	// Refused says why the remote's last head was not taken (nothing of
	// it was); empty when it was.
	Refused string `json:"refused,omitempty"`
	// FreshUntil is until when the remote's publisher said what this
	// home holds of it is current (its timestamp, fresh.go); Stale, that
	// this time has passed.
	FreshUntil *time.Time `json:"fresh_until,omitempty"`
	Stale      bool       `json:"stale,omitempty"`
}

// trustStates holds the last verification of each remote in this process.
type trustStates struct {
	mu sync.Mutex
	by map[string]TrustState
}

// updateTrust changes the state of the remote name under the lock.
func (r *Registry) updateTrust(name string, fn func(*TrustState)) {
	r.trust.mu.Lock()
	defer r.trust.mu.Unlock()
	if r.trust.by == nil {
		r.trust.by = map[string]TrustState{}
	}
	s := r.trust.by[name]
	s.Remote = name
	fn(&s)
	r.trust.by[name] = s
}

// TrustStates lists the remotes' last verifications in this process.
func (r *Registry) TrustStates() []TrustState {
	r.trust.mu.Lock()
	defer r.trust.mu.Unlock()
	var out []TrustState
	for _, s := range r.trust.by {
		out = append(out, s)
	}
	return out
}

// trustState is the remote's last verification in this process.
func (r *Registry) trustState(name string) TrustState {
	r.trust.mu.Lock()
	defer r.trust.mu.Unlock()
	return r.trust.by[name]
}

// verifyRemote verifies head, the main of rm just fetched into repo,
// against what this home trusts of rm, and records what it found
// (verifyHead, then its record). A refusal records nothing but the
// refusal. An unsigned remote that this home pins nothing of passes as it
// always did.
func (r *Registry) verifyRemote(ctx context.Context, repo *gitmeta.Repo, rm Remote, head Hash) (*Trust, error) {
	res, record, err := r.verifyHead(ctx, repo, rm, head)
	if err != nil {
		return nil, err
	}
	return res, record()
}

// verifyHead verifies head as verifyRemote does, and returns what to call
// to record it once the fetch is taken: it pins the signer on first use
// (in the home's config) and marks head verified in repo. A caller that
// refuses head for another reason does not call it, so that nothing of a
// history that was not taken counts as verified.
func (r *Registry) verifyHead(ctx context.Context, repo *gitmeta.Repo, rm Remote, head Hash) (*Trust, func() error, error) {
	// The pin as configured now: a first use earlier in this command (a
	// fetch checked twice) has set it.
	if now, ok, err := r.remote(rm.Name); err != nil {
		return nil, nil, err
	} else if ok {
		rm.Trust = now.Trust
	}
	verified, err := repo.Verified(rm.Name)
	if err != nil {
		return nil, nil, err
	}
	res, err := repo.VerifyHistory(ctx, gitmeta.TrustCheck{File: layout.AllowedSigners, Pin: rm.Trust, Verified: verified, Name: rm.Name}, head)
	if err != nil {
		if errors.Is(err, gitmeta.ErrUntrusted) {
			r.updateTrust(rm.Name, func(s *TrustState) {
				s.Key, s.Verified, s.At, s.Refused = rm.Trust, commitOrNone(verified), r.now(), err.Error()
			})
			err = fmt.Errorf("%w; nothing of it was taken (the last verified commit is %s)", err, shortCommit(verified))
		}
		return nil, nil, err
	}
	record := func() error {
		if !res.Signed {
			return nil
		}
		if res.FirstUse {
			err := r.updateConfig(func(cfg *gitmeta.Config) error {
				return cfg.Set(remoteKey(rm.Name, "trust"), res.Pin)
			})
			if err != nil {
				return err
			}
		}
		if head != verified {
			if err := repo.SetVerified(ctx, rm.Name, head); err != nil {
				return err
			}
		}
		r.updateTrust(rm.Name, func(s *TrustState) {
			s.Key, s.Verified, s.At, s.Refused = res.Pin, head.String(), r.now(), ""
		})
		return nil
	}
	return &res, record, nil
}

// commitOrNone is a commit's hash, "" for none.
func commitOrNone(h Hash) string {
	if h.IsZero() {
		return ""
	}
	return h.String()
}

// readTopFile reads one of the registry's own files at the top of s's tree
// (layout.AllowedSigners, layout.Timestamp); nil when there is none.
func readTopFile(s *gitmeta.Snapshot, path string) ([]byte, error) {
	b, err := s.ReadSmallFile(path, gitmeta.MaxSignersSize+1)
	if errors.Is(err, opm.ErrNotFound) {
		return nil, nil
	}
	return b, err
}

func shortCommit(h Hash) string {
	if h.IsZero() {
		return "none"
	}
	return h.String()[:12]
}

// maySign refuses a change this home would sign with a key the registry's
// allowed signers (at s, the commit the change is made on) do not allow:
// its readers would refuse it. A change to the file itself is judged by
// the file before it, and the first one, which adds it, by what it adds.
func maySign(s *gitmeta.Snapshot, author gitmeta.Signature, changes []gitmeta.Change) error {
	cur, err := readTopFile(s, layout.AllowedSigners)
	if err != nil {
		return err
	}
	if cur == nil {
		for _, c := range changes {
			if c.Path == layout.AllowedSigners && !c.Delete {
				cur = c.Data
			}
		}
		if cur == nil {
			return nil // an unsigned registry
		}
	}
	if _, err := gitmeta.MaySign(cur, author.Signer, author.When); err != nil {
		return opm.Errorf(opm.ErrUntrusted, "this registry's commits are signed (%s) and %v: readers would refuse the commit; opm config signing-key PATH names an allowed key, and a holder of one adds yours with opm signers add", layout.AllowedSigners, err)
	}
	return nil
}

// TrustStatus is what this home trusts of each remote, and what it last
// verified: the pin and the verified ref, with the last verification in
// this process (a daemon's, when asked through it) when there was one.
func (r *Registry) TrustStatus() ([]TrustState, error) {
	rms, err := r.Remotes()
	if err != nil {
		return nil, err
	}
	var out []TrustState
	for _, rm := range rms {
		r.noteFresh(rm) // recorded in the state; staleness is no error here
		s := r.trustState(rm.Name)
		s.Remote, s.Key = rm.Name, rm.Trust
		if v, err := r.meta.Verified(rm.Name); err == nil && !v.IsZero() {
			s.Verified = v.String()
		}
		out = append(out, s)
	}
	return out, nil
}

// CheckTrust verifies, at a daemon's start, that what this home holds of
// origin was verified: its tracking ref must verify from the last verified
// commit (a git fetch by hand moves it without). A refusal says to take
// origin's main again.
func (r *Registry) CheckTrust(ctx context.Context) error {
	o, ok, err := r.origin()
	if err != nil || !ok {
		return err
	}
	r.noteFresh(o) // recorded for Fresh and the status; staleness is no error here
	if o.Trust == "" {
		return nil
	}
	tracking, err := r.meta.Tracking(o.Name)
	if err != nil || tracking.IsZero() {
		return err
	}
	if _, err := r.verifyRemote(ctx, r.meta, o, tracking); err != nil {
		return fmt.Errorf("%w; opm sync --force takes origin's main again, verified", err)
	}
	return nil
}

// noteFresh records what checkFresh finds of rm where staleness is no
// error (a status, a daemon's start); a timestamp that cannot be read is
// logged with its cause (the state then shows none).
func (r *Registry) noteFresh(rm Remote) {
	if err := r.checkFresh(r.meta, rm); err != nil && !errors.Is(err, opm.ErrStale) {
		slog.Warn("freshness unknown: the timestamp cannot be read", "remote", rm.Name, "err", opm.OneLine(err))
	}
}
