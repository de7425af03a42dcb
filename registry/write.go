package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// The registry's changes to its metadata: every one is one commit made with
// gitmeta.Update, which replays it on the new head when another writer
// moved main first (docs/design.md §3).

// replayRule is the replay rule (docs/design.md §3), the one rule of a
// change replayed on a newer head after a lost race on main, here or at
// origin: the first time a file is read its digest is remembered, and a
// replay must find it unchanged — else another writer changed the same
// thing, and it fails with opm.ErrConflict, unless force. One value serves
// every attempt of one change.
type replayRule struct {
	seen  map[string]digest.Digest
	force bool
	where string // where the other writer changed it (" on origin"), if not here
	hint  string // how to get past a conflict, if there is a way
}

// current returns the digest of the manifest file p of s ("" when there is
// none), checking it against the first reading.
func (g *replayRule) current(s *gitmeta.Snapshot, p, what string) (digest.Digest, error) {
	b, err := s.ReadFile(p)
	var cur digest.Digest
	switch {
	case err == nil:
		cur = digest.FromBytes(b)
	case !errors.Is(err, opm.ErrNotFound):
		return "", err
	}
	if g.seen == nil {
		g.seen = map[string]digest.Digest{}
	}
	first, ok := g.seen[p]
	if !ok {
		g.seen[p] = cur
		return cur, nil
	}
	if cur != first && !g.force {
		return "", opm.Errorf(opm.ErrConflict, "%s was changed%s by another writer while this one ran (now %s, was %s)%s", what, g.where, orNone(cur), orNone(first), g.hint)
	}
	return cur, nil
}

func orNone(d digest.Digest) string {
	if d == "" {
		return "removed"
	}
	return d.String()
}

// tagChange is one commit's change of manifest files: body set under
// paths (nil body: the files removed).
type tagChange struct {
	what    string   // the reference, for messages
	paths   []string // the files of the layout
	body    []byte   // nil removes the files
	subject string   // what happened, the commit's first line
	facts   layout.Facts
	// mustExist fails with opm.ErrNotFound when no file is there (rm).
	mustExist bool
	// check, if set, must pass on the snapshot the change is made on
	// (each replay's too).
	check func(*gitmeta.Snapshot) error
	// derived, if set, is a file kept by digest the change adds where it
	// is not yet (a Helm chart's files, chartFilesChange).
	derived *gitmeta.Change
}

// commitResult says what a change did.
type commitResult struct {
	commit    Hash
	previous  digest.Digest // what the one path held before, if it held anything
	committed bool          // false: everything was as asked already
	// kept: manifests a removal kept by digest, as an index names them.
	kept []digest.Digest
}

// commit makes the change one commit on the head, replayed on a newer head
// under the replay rule g.
func (r *Registry) commit(ctx context.Context, g *replayRule, c tagChange) (commitResult, error) {
	var res commitResult
	var d digest.Digest
	if c.body != nil {
		d = digest.FromBytes(c.body)
	}
	commit, committed, err := r.meta.Update(ctx, r.Author(ctx), func(s *gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		if c.check != nil {
			if err := c.check(s); err != nil {
				return nil, gitmeta.Message{}, err
			}
		}
		facts := c.facts
		if d != "" {
			facts.Digest = d
		}
		res.previous = ""
		var changes []gitmeta.Change
		present := false
		for _, p := range c.paths {
			cur, err := g.current(s, p, c.what)
			if err != nil {
				return nil, gitmeta.Message{}, err
			}
			present = present || cur != ""
			if len(c.paths) == 1 {
				res.previous = cur
				if cur != "" && c.facts.Previous == "" {
					facts.Previous = cur
				}
			}
			switch {
			case cur == d: // already so (d "" and no file: nothing to remove)
			case c.body == nil:
				changes = append(changes, gitmeta.Change{Path: p, Delete: true})
			default:
				changes = append(changes, gitmeta.Change{Path: p, Data: c.body})
			}
		}
		if c.derived != nil {
			if _, err := s.Stat(c.derived.Path); errors.Is(err, opm.ErrNotFound) {
				changes = append(changes, *c.derived)
			} else if err != nil {
				return nil, gitmeta.Message{}, err
			}
		}
		if c.mustExist && !present {
			if ref, err := opm.ParseTagReference(c.what); err == nil {
				return nil, gitmeta.Message{}, r.newView(s).Missing(ref, nil)
			}
			return nil, gitmeta.Message{}, opm.Errorf(opm.ErrNotFound, "%s: no such tag", c.what)
		}
		msg := commitMessage(c.subject, facts)
		// A removal keeps children: a manifest an index names whose last
		// copy goes with the tag stays by digest. (A tag overwritten is not
		// checked: it would read the whole repository on every push.)
		res.kept = nil
		if c.body == nil {
			orphans, err := r.orphans(s, changes)
			if err != nil {
				return nil, gitmeta.Message{}, err
			}
			var lines []string
			for _, o := range orphans {
				changes = append(changes, gitmeta.Change{Path: layout.ManifestPath(o.file.Ref.Repository, o.file.Digest), Data: o.body})
				res.kept = append(res.kept, o.file.Digest)
				lines = append(lines, fmt.Sprintf("kept %s@%s by digest: the index %s names it", o.file.Ref.Repository, o.file.Digest, o.index))
			}
			msg.Body = strings.Join(lines, "\n")
		}
		return changes, msg, nil
	})
	res.commit, res.committed = commit, committed
	return res, err
}

// TagResult says what a tag or rm did.
type TagResult struct {
	Ref       opm.Reference `json:"ref"`
	Digest    digest.Digest `json:"digest,omitempty"`
	Previous  digest.Digest `json:"previous,omitempty"`
	Commit    string        `json:"commit"`
	Committed bool          `json:"committed"`
	// Kept lists manifests a removal kept by digest: an index of the
	// repository names them.
	Kept []digest.Digest `json:"kept,omitempty"`
}

// Tag points dst at the package src names. No blob is copied: the package's
// blobs are already in the registry.
func (r *Registry) Tag(ctx context.Context, src, dst opm.Reference) (*TagResult, error) {
	if dst.Tag == "" {
		return nil, opm.Errorf(opm.ErrInvalid, "tag %s: the destination needs a :tag", dst)
	}
	p, err := r.Resolve(src)
	if err != nil {
		return nil, err
	}
	res, err := r.change(ctx, tagChange{what: dst.String(), paths: []string{layout.TagPath(dst.Repository, dst.Tag)},
		body: p.Bytes, subject: fmt.Sprintf("tag %s from %s", dst, src), facts: layout.Facts{Source: src.String()}}, p.Manifest.Blobs(), false, "")
	if err != nil {
		return nil, err
	}
	return &TagResult{Ref: dst, Digest: p.Digest, Previous: res.previous, Commit: res.commit.String(), Committed: res.committed}, nil
}

// Remove deletes a tag as a commit. Its blobs stay until garbage collection.
func (r *Registry) Remove(ctx context.Context, ref opm.Reference) (*TagResult, error) {
	if ref.Tag == "" {
		return nil, opm.Errorf(opm.ErrInvalid, "rm %s: removes a tag, give ns/project/repo:tag", ref)
	}
	res, err := r.change(ctx, tagChange{what: ref.String(), paths: []string{layout.TagPath(ref.Repository, ref.Tag)},
		subject: "rm " + ref.String(), mustExist: true}, nil, false, "")
	if err != nil {
		return nil, err
	}
	return &TagResult{Ref: ref, Previous: res.previous, Commit: res.commit.String(), Committed: res.committed, Kept: res.kept}, nil
}

// ErrBlobUnknown: a manifest names a blob (or an index a manifest) the
// registry does not have; ErrSizeInvalid: a blob it names has another size.
var (
	ErrBlobUnknown = opm.WithKind(opm.ErrInvalid, errors.New("the manifest names content the registry does not have"))
	ErrSizeInvalid = opm.WithKind(opm.ErrInvalid, errors.New("the manifest names a blob with another size"))
)

// PutManifest stores a manifest another OCI client sent: body must parse as
// a manifest the registry accepts (contentType is the media type the client
// declared, "" if none), every blob it names (and every manifest an index
// names, in repo) must be in the registry first, and then it is one commit
// under tags, or kept by digest when there are none. A tag changed by
// another writer meanwhile is an opm.ErrConflict error. It reports the
// manifest and whether a commit was made.
func (r *Registry) PutManifest(ctx context.Context, repo opm.Repository, tags []string, body []byte, contentType string) (*opm.AnyManifest, bool, error) {
	m, err := opm.ParseAnyManifest(body, contentType)
	if err != nil {
		return nil, false, err
	}
	for _, t := range tags {
		if !opm.ValidTag(t) {
			return nil, false, opm.Errorf(opm.ErrInvalid, "tag %q: %s", t, opm.TagRule)
		}
	}
	// Children before parents: every blob (and, for an index, every
	// manifest) named must be here before the manifest is committed, and no
	// gc removes one found here before the commit names it. Only a foreign
	// layer, no file of the package, is not held (opm.Descriptor.Foreign):
	// a titled one of a "non-distributable" type is a file like any other.
	release, err := HoldForWrite(ctx, r.dir)
	if err != nil {
		return nil, false, err
	}
	defer release()
	for _, b := range m.Blobs() {
		size, err := r.blobs.Stat(ctx, b.Digest)
		if errors.Is(err, opm.ErrNotFound) {
			return nil, false, opm.WithKind(ErrBlobUnknown, fmt.Errorf("blob %s is not in the registry: push it first", b.Digest))
		}
		if err != nil {
			return nil, false, err
		}
		if size != b.Size {
			return nil, false, opm.WithKind(ErrSizeInvalid, fmt.Errorf("blob %s has %d bytes, the manifest says %d", b.Digest, size, b.Size))
		}
	}
	d := digest.FromBytes(body)
	c := tagChange{what: fmt.Sprintf("%s@%s", repo, d), paths: []string{layout.ManifestPath(repo, d)},
		body: body, subject: fmt.Sprintf("push %s@%s", repo, d), facts: layout.Facts{Via: "oci"}}
	if m.IsIndex() && len(m.Manifests) > 0 {
		// Checked on the snapshot the commit is made on: a DELETE of a
		// child committed meanwhile is seen (DeleteManifest checks the
		// other way round).
		c.check = func(s *gitmeta.Snapshot) error {
			all, err := r.newView(s).Manifests(repo)
			if err != nil {
				return err
			}
			for _, child := range m.Manifests {
				if !slices.ContainsFunc(all, func(e ManifestEntry) bool { return e.Digest == child.Digest }) {
					return opm.WithKind(ErrBlobUnknown, fmt.Errorf("manifest %s is not in %s: push it first", child.Digest, repo))
				}
			}
			return nil
		}
	}
	if len(tags) > 0 {
		c.paths = c.paths[:0]
		for _, t := range tags {
			c.paths = append(c.paths, layout.TagPath(repo, t))
		}
		c.what = fmt.Sprintf("%s:%s", repo, strings.Join(tags, ","))
		c.subject = "push " + c.what
	}
	if c.derived, err = r.chartFilesChange(ctx, repo, m, body, d); err != nil {
		return nil, false, err
	}
	res, err := r.commit(ctx, &replayRule{}, c)
	return m, res.committed, err
}

// DeleteManifest removes the manifest d of repo: every tag that holds it and
// its copy kept by digest, in one commit. Blobs stay until gc. Parents go
// before their children, as they come after them (PutManifest): while an
// index of repo names d, it is refused with opm.ErrConflict.
func (r *Registry) DeleteManifest(ctx context.Context, repo opm.Repository, d digest.Digest) error {
	_, _, err := r.meta.Update(ctx, r.Author(ctx), func(s *gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		v := r.newView(s)
		all, err := v.Manifests(repo)
		if err != nil {
			return nil, gitmeta.Message{}, err
		}
		var changes []gitmeta.Change
		var tags []string
		for _, m := range all {
			if m.Digest == d {
				changes = append(changes, gitmeta.Change{Path: m.Path, Delete: true})
				if m.Ref.Tag != "" {
					tags = append(tags, m.Ref.Tag)
				}
			}
		}
		if len(changes) == 0 {
			return nil, gitmeta.Message{}, opm.Errorf(opm.ErrNotFound, "%s@%s: no such manifest", repo, d)
		}
		orphans, err := r.orphans(s, changes)
		if err != nil {
			return nil, gitmeta.Message{}, err
		}
		if len(orphans) > 0 {
			o := orphans[0]
			return nil, gitmeta.Message{}, opm.Errorf(opm.ErrConflict, "%s@%s is named by the index %s; delete that index first", repo, d, o.index)
		}
		msg := commitMessage(fmt.Sprintf("rm %s@%s", repo, d), layout.Facts{Previous: d, Via: "oci"})
		if len(tags) > 0 {
			msg.Body = "tags: " + strings.Join(tags, " ")
		}
		return changes, msg, nil
	})
	return err
}

// orphan is a manifest a removal would take the last copy of while an index
// left in its repository names it: a file the removal takes (its body) and
// an index naming it.
type orphan struct {
	file  ManifestEntry
	body  []byte
	index opm.Reference
}

// orphans is the rule of children before parents (docs/design.md §4) for
// a removal of manifest files of one repository (changes, made on s): the
// manifests whose last copy it takes while an index left in the repository
// names them. A delete by digest is refused for them (opm.ErrConflict,
// naming the index to delete first); a tag removed keeps them by digest.
// (PutManifest checks the other way: an index only after its manifests.)
func (r *Registry) orphans(s *gitmeta.Snapshot, changes []gitmeta.Change) ([]orphan, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	p, err := layout.Parse(changes[0].Path)
	if err != nil || !p.IsManifest() {
		return nil, err
	}
	v := r.newView(s)
	all, err := v.Manifests(p.Ref.Repository)
	if err != nil {
		return nil, err
	}
	changed := map[string]bool{}
	for _, c := range changes {
		changed[c.Path] = true
	}
	// The digests the change takes away: those no file left keeps, each
	// with a file of it the change removes.
	gone := map[digest.Digest]ManifestEntry{}
	for _, e := range all {
		if changed[e.Path] {
			gone[e.Digest] = e
		}
	}
	for _, e := range all {
		if !changed[e.Path] {
			delete(gone, e.Digest)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	var out []orphan
	for _, e := range all {
		if changed[e.Path] {
			continue // removed: it names nothing after
		}
		m, err := v.Read(e)
		if err != nil {
			return nil, err
		}
		if m.Manifest == nil || !m.Manifest.IsIndex() {
			continue
		}
		for _, c := range m.Manifest.Manifests {
			f, ok := gone[c.Digest]
			if !ok {
				continue
			}
			delete(gone, c.Digest)
			child, err := v.Read(f)
			if err != nil {
				return nil, err
			}
			out = append(out, orphan{file: f, body: child.Body, index: e.Ref})
		}
	}
	return out, nil
}
