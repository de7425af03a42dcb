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

// change makes c one commit: in a home with an origin, published to it
// (publish: force and hint are for a lost race there), else on the local
// head. blobs are those c names.
func (r *Registry) change(ctx context.Context, c tagChange, blobs []opm.Descriptor, force bool, hint string) (commitResult, error) {
	o, ok, err := r.origin()
	switch {
	case err != nil:
		return commitResult{}, err
	case ok:
		return r.publish(ctx, o, &replayRule{force: force, where: " on " + o.Name, hint: hint}, c, blobs)
	}
	return r.commit(ctx, &replayRule{}, c)
}

// publish is the last step of a change (a push, a tag, an rm) in a home
// with an origin: bring local main up to origin's, commit the change
// locally, push the commit to origin, and on a lost race replay the change
// on origin's new head (under the replay rule g, as every replay: the tag
// must be as it was when the change began, unless g.force). The blobs the
// change names, and those of unpushed local commits, are in origin's bucket
// before origin's metadata names them.
func (r *Registry) publish(ctx context.Context, o Remote, g *replayRule, c tagChange, blobs []opm.Descriptor) (commitResult, error) {
	what := c.what
	b, opened, err := r.openBucket(ctx, o)
	if err != nil {
		return commitResult{}, err
	}
	if opened {
		defer b.Close()
		if err := r.uploadBlobs(ctx, b, blobs); err != nil {
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
	res, err := r.commit(ctx, g, c)
	if err != nil {
		return res, err
	}
	for attempt := 0; ; attempt++ {
		err := r.meta.Push(ctx, o.URL, remote, res.commit, false)
		if err == nil {
			// Record what origin now holds, as a fetch would.
			if err := r.meta.SetTracking(ctx, o.Name, res.commit); err != nil {
				return res, fmt.Errorf("%s published to %s, but its tracking ref was not updated: %w", what, o.Name, err)
			}
			return res, nil
		}
		if !errors.Is(err, gitmeta.ErrRemoteMoved) || attempt+1 == pushAttempts {
			return res, fmt.Errorf("%s committed locally but not published to %s: %w", what, o.Name, err)
		}
		// Lost the race: replay the tag change on origin's new head.
		if local != remote {
			return res, opm.Errorf(opm.ErrConflict, "%s: origin moved and this home has other unpublished commits; run opm sync --force to take origin's main, then push again", what)
		}
		check, _, _ := r.originCheck(ctx, o)
		newRemote, err := r.meta.FetchChecked(ctx, o.URL, gitmeta.TrackingRef(o.Name), check)
		if err != nil {
			return res, err
		}
		if err := r.meta.SetHead(ctx, res.commit, newRemote); err != nil {
			return res, err
		}
		remote, local = newRemote, newRemote
		prev := res.previous
		if res, err = r.commit(ctx, g, c); err != nil {
			return res, err
		}
		if !res.committed {
			res.previous = prev // the other writer pushed the same
			return res, nil
		}
	}
}
