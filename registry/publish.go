package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// pushAttempts bounds the replays of a push that keeps losing the race.
const pushAttempts = 10

// publishTag is Push's last step in a home with an origin: bring local main
// up to origin's, commit the tag locally, push the commit to origin, and on
// a lost race replay the change on origin's new head (under the replay rule,
// as every replay: the tag must be as it was when the push began, unless
// force). The package's blobs are in origin's bucket before origin's
// metadata names them.
func (r *Registry) publishTag(ctx context.Context, o Remote, ref opm.Reference, body []byte, m *opm.Manifest, subject string, force bool) (commitResult, error) {
	b, opened, err := r.openBucket(ctx, o)
	if err != nil {
		return commitResult{}, err
	}
	if opened {
		defer b.Close()
		if err := r.uploadBlobs(ctx, b, m.Blobs()); err != nil {
			return commitResult{}, err
		}
	}
	remote, err := r.followOrigin(ctx, o, false)
	if err != nil {
		return commitResult{}, err
	}
	local, err := r.meta.Head()
	if err != nil {
		return commitResult{}, err
	}
	if local != remote {
		// Unpushed local commits go along: their blobs go first.
		changes, err := tagChanges(r.meta, remote, local, nil)
		if err != nil {
			return commitResult{}, err
		}
		if err := r.uploadBlobs(ctx, b, layout.Blobs(changes)); err != nil {
			return commitResult{}, err
		}
	}
	g := &replayRule{force: force, where: " on " + o.Name, hint: "; --force replaces it"}
	res, err := r.setTag(ctx, g, ref, body, subject, layout.Facts{})
	if err != nil {
		return res, err
	}
	for attempt := 0; ; attempt++ {
		err := r.meta.Push(ctx, o.URL, remote, res.commit, false)
		if err == nil {
			// Record what origin now holds, as a fetch would.
			if err := r.meta.SetTracking(ctx, o.Name, res.commit); err != nil {
				return res, fmt.Errorf("%s published to %s, but its tracking ref was not updated: %w", ref, o.Name, err)
			}
			return res, nil
		}
		if !errors.Is(err, gitmeta.ErrRemoteMoved) || attempt+1 == pushAttempts {
			return res, fmt.Errorf("%s committed locally but not published to %s: %w", ref, o.Name, err)
		}
		// Lost the race: replay the tag change on origin's new head.
		if local != remote {
			return res, opm.Errorf(opm.ErrConflict, "%s: origin moved and this home has other unpublished commits; run opm sync --force to take origin's main, then push again", ref)
		}
		check, _ := r.originCheck(o)
		newRemote, err := r.meta.FetchChecked(ctx, o.URL, gitmeta.TrackingRef(o.Name), check)
		if err != nil {
			return res, err
		}
		if err := r.meta.SetHead(ctx, res.commit, newRemote); err != nil {
			return res, err
		}
		remote, local = newRemote, newRemote
		prev := res.previous
		if res, err = r.setTag(ctx, g, ref, body, subject, layout.Facts{}); err != nil {
			return res, err
		}
		if !res.committed {
			res.previous = prev // the other writer pushed the same
			return res, nil
		}
	}
}
