package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// Mirror is the registry's side of `opm sync SRC DST` (package sync has
// the steps): the two remotes' metadata, fetched into the scratch
// repository of mirrors into DST (<home>/mirrors/<dst>.git, SRC's main as
// its tracking ref, DST's as its main), their buckets, and the two ways to
// publish. Open it with OpenMirror and Close it.
type Mirror struct {
	r        *Registry
	src, dst Remote
	repo     *gitmeta.Repo
	srcHead  Hash
	dstHead  Hash
	release  func() // the gc lock, held shared by a mirror that writes

	srcB, dstB *cas.Bucket
}

// OpenMirror fetches the metadata of the remotes src and dst. With write,
// it holds the home's gc lock shared until Close: an opm gc of DST's bucket
// from this home waits for the copy and the publish (blobs found already
// there are about to be named).
func (r *Registry) OpenMirror(ctx context.Context, src, dst string, write bool) (*Mirror, error) {
	for _, name := range []string{src, dst} {
		if err := ValidateRemoteName(name); err != nil {
			return nil, fmt.Errorf("sync: %w", err)
		}
	}
	if src == dst {
		return nil, opm.Errorf(opm.ErrInvalid, "sync %s %s: source and destination are the same remote", src, dst)
	}
	m := &Mirror{r: r, release: func() {}}
	var err error
	if m.src, err = r.Remote(src); err != nil {
		return nil, err
	}
	if m.dst, err = r.Remote(dst); err != nil {
		return nil, err
	}
	if write {
		if m.release, err = HoldForWrite(ctx, r.dir); err != nil {
			return nil, err
		}
	}
	scratch := r.mirrorScratch(dst)
	if err := os.MkdirAll(filepath.Dir(scratch), 0o755); err != nil {
		m.release()
		return nil, fsError(err)
	}
	if m.repo, err = gitmeta.Init(scratch); err != nil {
		m.release()
		return nil, err
	}
	if err := m.fetch(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// fetch brings both heads into the scratch repository, and makes its main
// DST's.
func (m *Mirror) fetch(ctx context.Context) error {
	var err error
	// The source's history must verify as origin's does when followed:
	// a mirror copies no commit its readers would refuse.
	verify := func(h Hash) error {
		_, err := m.r.verifyRemote(ctx, m.repo, m.src, h)
		return err
	}
	if m.srcHead, err = m.repo.FetchChecked(ctx, m.src.URL, gitmeta.TrackingRef(m.src.Name), verify); err != nil {
		return fmt.Errorf("source %s: %w", m.src.Name, err)
	}
	if m.dstHead, err = m.repo.Fetch(ctx, m.dst.URL, gitmeta.TrackingRef(m.dst.Name)); err != nil {
		return fmt.Errorf("destination %s: %w", m.dst.Name, err)
	}
	cur, err := m.repo.Head()
	if err != nil {
		return err
	}
	if cur != m.dstHead {
		return m.repo.SetHead(ctx, cur, m.dstHead)
	}
	return nil
}

// Close releases the scratch repository, the buckets and the gc lock.
func (m *Mirror) Close() error {
	var errs []error
	for _, b := range []*cas.Bucket{m.srcB, m.dstB} {
		if b != nil {
			errs = append(errs, b.Close())
		}
	}
	if m.repo != nil {
		errs = append(errs, m.repo.Close())
	}
	m.release()
	return errors.Join(errs...)
}

// Src and Dst are the two remotes.
func (m *Mirror) Src() Remote { return m.src }
func (m *Mirror) Dst() Remote { return m.dst }

// SrcHead and DstHead are the remotes' mains as fetched.
func (m *Mirror) SrcHead() Hash { return m.srcHead }
func (m *Mirror) DstHead() Hash { return m.dstHead }

// DstFiltered reports whether DST's last commit was written by a filtered
// mirror (it carries Opm-Synced-From); an empty DST counts as one. The
// mirror's own housekeeping after it — its allowed signers, its
// timestamp — does not count: those commits are passed over.
func (m *Mirror) DstFiltered(ctx context.Context) (bool, error) {
	const page = 16
	for from := m.dstHead; ; {
		if from.IsZero() {
			return true, nil
		}
		log, err := m.repo.Log(ctx, from, "", page)
		if err != nil || len(log) == 0 {
			return false, err
		}
		for _, e := range log {
			if factsOf(e.Message).SyncedFrom != "" {
				return true, nil
			}
			if own, err := m.housekeeping(e.Parent, e.Commit); err != nil || !own {
				return false, err
			}
			from = e.Parent
		}
	}
}

// housekeeping reports whether the commit only changes a registry's own
// files at the top of the tree (layout.AllowedSigners, layout.Timestamp).
func (m *Mirror) housekeeping(parent, commit Hash) (bool, error) {
	diff, err := m.repo.Diff(parent, commit)
	if err != nil {
		return false, err
	}
	for _, d := range diff {
		if d.Path != layout.AllowedSigners && d.Path != layout.Timestamp {
			return false, nil
		}
	}
	return len(diff) > 0, nil
}

// Ahead counts the commits of SRC that DST lacks; fastForward is false when
// DST has commits SRC lacks.
func (m *Mirror) Ahead(ctx context.Context) (n int, fastForward bool, err error) {
	return m.repo.Ahead(ctx, m.dstHead, m.srcHead)
}

// Changes lists the manifest files that differ from DST's head to SRC's
// (see layout.Changes): with a nil match every one, manifests kept by
// digest included; else the tags it chooses.
func (m *Mirror) Changes(match func(opm.Reference) bool) ([]layout.TagChange, error) {
	out, err := tagChanges(m.repo, m.dstHead, m.srcHead, match)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", m.src.Name, err)
	}
	return out, nil
}

// MirrorBlobs is what a mirror needs of a bucket.
type MirrorBlobs interface {
	cas.Fetcher
	cas.Stater
	cas.Pusher
	cas.Storer
}

// CopyBlob puts the blob b into dst, opening it at src only once dst
// starts reading (cas.Copy). With lookup, dst is asked first and a blob it
// has costs that lookup and no read; without, a small blob is sent at once
// (a DST that names nothing lacks it). src's reader verifies the bytes and
// dst verifies them again before they become visible, so a corrupt source
// blob never lands. An error of src is returned as it is, not as dst's.
func CopyBlob(ctx context.Context, src, dst MirrorBlobs, b opm.Descriptor, lookup bool) (cas.Copied, error) {
	return cas.Copy(ctx, dst, b.Digest, b.Size, lookup, func() (io.ReadCloser, error) {
		return src.Open(ctx, b.Digest)
	})
}

// Buckets opens the two remotes' buckets, once.
func (m *Mirror) Buckets(ctx context.Context) (src, dst MirrorBlobs, err error) {
	if m.srcB == nil {
		if m.srcB, err = cas.OpenBucket(ctx, m.src.Blobs); err != nil {
			return nil, nil, fmt.Errorf("source %s: %w", m.src.Name, err)
		}
	}
	if m.dstB == nil {
		if m.dstB, err = cas.OpenBucket(ctx, m.dst.Blobs); err != nil {
			return nil, nil, fmt.Errorf("destination %s: %w", m.dst.Name, err)
		}
	}
	return m.srcB, m.dstB, nil
}

// FastForward makes DST's main SRC's (force: even over commits DST has that
// SRC lacks), keeping SRC's commits as they are.
func (m *Mirror) FastForward(ctx context.Context, force bool) error {
	return m.publish(ctx, m.srcHead, force)
}

// PublishFiltered writes one commit on DST's head setting the changes as
// they are at SRC, carrying Opm-Synced-From: <SRC URL>@<commit>, and makes
// it DST's main. It returns the commit.
func (m *Mirror) PublishFiltered(ctx context.Context, changes []layout.TagChange) (Hash, error) {
	cs := make([]gitmeta.Change, len(changes))
	tags := 0
	for i, c := range changes {
		cs[i] = gitmeta.Change{Path: c.Path, Data: c.Body, Delete: c.Removed()}
		if c.Ref.Tag != "" {
			tags++
		}
	}
	msg := commitMessage(fmt.Sprintf("sync %d tag(s) from %s", tags, m.src.Name),
		layout.Facts{SyncedFrom: m.src.URL + "@" + m.srcHead.String()})
	commit, _, err := m.repo.Update(ctx, m.r.Author(ctx), func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return cs, msg, nil
	})
	if err != nil {
		return commit, err
	}
	return commit, m.publish(ctx, commit, false)
}

func (m *Mirror) publish(ctx context.Context, commit Hash, force bool) error {
	err := m.repo.Push(ctx, m.dst.URL, m.dstHead, commit, force)
	if errors.Is(err, gitmeta.ErrRemoteMoved) {
		return fmt.Errorf("%s changed while this sync ran; run it again (the copied blobs stay): %w", m.dst.Name, err)
	}
	return err
}
