package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// Freshness against freeze (docs/design.md §3, "Freshness"): the publisher
// commits a timestamp, layout.Timestamp, saying until when its metadata is
// current (opm timestamp, renewed by CI more often than it expires). A
// reader whose origin's last verified head holds an expired one is stale:
// an origin that is frozen (serving an old, validly signed state) or
// unreachable stops being believed at a known time — the analogue of
// CernVM-FS's whitelist expiry.

// timestampFile is the content of layout.Timestamp.
type timestampFile struct {
	Expires time.Time `json:"expires"`
}

// DefaultTimestampLife is how long opm timestamp's promise lasts unless
// told.
const DefaultTimestampLife = 7 * 24 * time.Hour

// Timestamp commits layout.Timestamp: the metadata is current until now
// plus life. Published to origin in a home with one; signed like every
// commit.
func (r *Registry) Timestamp(ctx context.Context, life time.Duration) (*TimestampResult, error) {
	if life <= 0 {
		return nil, opm.Errorf(opm.ErrInvalid, "timestamp: the expiry must be in the future, not %v", life)
	}
	until := r.now().Add(life).UTC().Truncate(time.Second)
	body, err := json.Marshal(timestampFile{Expires: until})
	if err != nil {
		return nil, err
	}
	res, err := r.change(ctx, tagChange{what: layout.Timestamp, paths: []string{layout.Timestamp}, body: append(body, '\n'),
		subject: "timestamp: current until " + until.Format(time.RFC3339)}, nil, true, "")
	if err != nil {
		return nil, err
	}
	return &TimestampResult{Expires: until, Commit: res.commit.String()}, nil
}

// TimestampResult says what opm timestamp committed.
type TimestampResult struct {
	Expires time.Time `json:"expires"`
	Commit  string    `json:"commit"`
}

// freshUntil reads the timestamp of commit: until when its publisher said
// it is current; zero when it has none. One that does not parse is an
// error naming it.
func (r *Registry) freshUntil(repo *gitmeta.Repo, commit Hash) (time.Time, error) {
	if commit.IsZero() {
		return time.Time{}, nil
	}
	s, err := repo.Snapshot(commit)
	if err != nil {
		return time.Time{}, err
	}
	b, err := readTopFile(s, layout.Timestamp)
	if err != nil || b == nil {
		return time.Time{}, err
	}
	var ts timestampFile
	if err := json.Unmarshal(b, &ts); err != nil || ts.Expires.IsZero() {
		return time.Time{}, opm.Errorf(opm.ErrInvalid, "%s at %s: want {\"expires\": RFC 3339 time}; opm timestamp writes a new one", layout.Timestamp, shortCommit(commit))
	}
	return ts.Expires, nil
}

// checkFresh records until when what this home holds of rm is current (the
// last verified commit, else the tracking ref of an unsigned remote), and
// refuses, with an opm.ErrStale error, when that time has passed.
func (r *Registry) checkFresh(repo *gitmeta.Repo, rm Remote) error {
	head, err := repo.Verified(rm.Name)
	if err == nil && head.IsZero() {
		head, err = repo.Tracking(rm.Name)
	}
	if err != nil {
		return err
	}
	until, err := r.freshUntil(repo, head)
	if err != nil {
		return err
	}
	now := r.now()
	stale := !until.IsZero() && !now.Before(until)
	r.updateTrust(rm.Name, func(s *TrustState) {
		s.FreshUntil, s.Stale = nil, stale
		if !until.IsZero() {
			s.FreshUntil = &until
		}
	})
	if stale {
		return opm.Errorf(opm.ErrStale, "%s's metadata is stale: its timestamp expired at %s, %s ago (a frozen or unreachable origin; its publisher renews it with opm timestamp)",
			rm.Name, until.Format(time.RFC3339), now.Sub(until).Round(time.Second))
	}
	return nil
}

// Fresh reports whether origin's metadata, as this home holds it, is
// shown current by its timestamp at this moment: an opm.ErrStale error
// when the timestamp has expired or there is none (opm mount
// --require-fresh refuses opens then). It reads what the last sync or
// daemon start found, and the clock.
func (r *Registry) Fresh() error {
	s := r.trustState(Origin)
	switch {
	case s.FreshUntil == nil:
		return opm.Errorf(opm.ErrStale, "origin's metadata has no timestamp: nothing shows it current")
	case !r.now().Before(*s.FreshUntil):
		return opm.Errorf(opm.ErrStale, "origin's metadata is stale: its timestamp expired at %s", s.FreshUntil.Format(time.RFC3339))
	}
	return nil
}

// errStaleToo adds staleness to the error of a sync that failed: an
// unreachable origin is also one whose promise may have run out.
func errStaleToo(err, stale error) error {
	switch {
	case stale == nil:
		return err
	case err == nil:
		return stale
	}
	return fmt.Errorf("%w; and %w", err, stale)
}
