package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// View is the registry's metadata at one commit, read-only: the one way the
// mount, the HTTP server, the mirror and the CLI read it. It never changes
// and is safe for concurrent use. Every manifest it returns has been
// checked: one kept by digest hashes to its name.
type View struct {
	r    *Registry
	snap *gitmeta.Snapshot

	timesMu sync.Mutex
	times   map[string]*tagTimes // by repository path
}

// Head is the commit main points at (zero before the first change): one
// small file read.
func (r *Registry) Head() (Hash, error) { return r.meta.Head() }

// View returns the view of the head.
func (r *Registry) View() (*View, error) {
	h, err := r.meta.Head()
	if err != nil {
		return nil, err
	}
	r.head.mu.Lock()
	v := r.head.v
	r.head.mu.Unlock()
	if v != nil && v.Commit() == h {
		return v, nil
	}
	if v, err = r.ViewAt(h); err != nil {
		return nil, err
	}
	r.head.mu.Lock()
	r.head.v = v
	r.head.mu.Unlock()
	return v, nil
}

// ViewAt returns the view of a commit (zero: the empty registry). It fails
// with opm.ErrNotFound if there is no such commit.
func (r *Registry) ViewAt(commit Hash) (*View, error) {
	s, err := r.meta.Snapshot(commit)
	if err != nil {
		return nil, err
	}
	return r.newView(s), nil
}

func (r *Registry) newView(s *gitmeta.Snapshot) *View {
	return &View{r: r, snap: s, times: map[string]*tagTimes{}}
}

// ResolveCommit resolves a full commit hash or a unique prefix of at least
// 7 hex digits.
func (r *Registry) ResolveCommit(prefix string) (Hash, error) { return r.meta.ResolveCommit(prefix) }

// Commit is the view's commit, zero for the empty registry.
func (v *View) Commit() Hash { return v.snap.Commit() }

// When is the commit's time, zero for the empty registry.
func (v *View) When() time.Time { return v.snap.When() }

// HasNode reports whether the namespace, project or repository (1 to 3
// name parts) exists.
func (v *View) HasNode(parts []string) (bool, error) {
	e, err := v.snap.Stat(strings.Join(parts, "/"))
	if errors.Is(err, opm.ErrNotFound) {
		return false, nil
	}
	return err == nil && e.Dir, err
}

// Children lists the valid names below a node (nil: the namespaces; a
// namespace: its projects; a project: its repositories), sorted. A node
// that does not exist is an opm.ErrNotFound error; the empty registry has
// no namespaces.
func (v *View) Children(parts []string) ([]string, error) {
	p := strings.Join(parts, "/")
	entries, err := v.snap.ReadDir(p)
	if errors.Is(err, opm.ErrNotFound) {
		if len(parts) == 0 {
			return nil, nil
		}
		return nil, opm.Errorf(opm.ErrNotFound, "%s: no such %s", p, layout.LevelNames[len(parts)])
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Dir && opm.ValidComponent(e.Name) {
			out = append(out, e.Name)
		}
	}
	return out, nil
}

// TagEntry is one tag of a repository, as listed: its name and the git blob
// of its manifest file (the same ID, the same manifest).
type TagEntry struct {
	Tag string
	ID  Hash
}

// Tags lists a repository's tags, sorted by name, without reading their
// manifests. A repository with no tags, or none at all, has none.
func (v *View) Tags(repo opm.Repository) ([]TagEntry, error) {
	entries, err := v.snap.ReadDir(layout.TagsDir(repo))
	if errors.Is(err, opm.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]TagEntry, 0, len(entries))
	for _, e := range entries {
		if t, ok := layout.TagOfFile(e.Name); ok && !e.Dir {
			out = append(out, TagEntry{Tag: t, ID: e.Hash})
		}
	}
	// Git orders the files (<tag>.json), not the tags: "a-b.json" before
	// "a.json".
	slices.SortFunc(out, func(a, b TagEntry) int { return strings.Compare(a.Tag, b.Tag) })
	return out, nil
}

// Tag finds one tag of a repository, without reading its manifest.
func (v *View) Tag(repo opm.Repository, tag string) (TagEntry, error) {
	ref := opm.Reference{Repository: repo, Tag: tag}
	if !opm.ValidTag(tag) {
		return TagEntry{}, opm.Errorf(opm.ErrNotFound, "%s: no such tag", ref)
	}
	e, err := v.snap.Stat(layout.TagPath(repo, tag))
	if err == nil && e.Dir {
		err = opm.Errorf(opm.ErrNotFound, "%s: no such tag", ref)
	}
	if errors.Is(err, opm.ErrNotFound) {
		return TagEntry{}, opm.Errorf(opm.ErrNotFound, "%s: no such tag", ref)
	}
	return TagEntry{Tag: tag, ID: e.Hash}, err
}

// Manifest finds the manifest a reference names: a tag's file, or for a
// digest the manifest kept by digest or any tag of the repository holding
// it. The bytes are always hash-checked against a digest reference. A
// manifest that does not parse is returned with Err set (it can still be
// served byte for byte); one that is not there is an opm.ErrNotFound error.
func (v *View) Manifest(ref opm.Reference) (*layout.StoredManifest, error) {
	if ref.Tag != "" {
		e, err := v.Tag(ref.Repository, ref.Tag)
		if err != nil {
			return nil, err
		}
		return v.read(layout.TagPath(ref.Repository, ref.Tag), e.ID, ref)
	}
	p := layout.ManifestPath(ref.Repository, ref.Digest)
	if e, err := v.snap.Stat(p); err == nil && !e.Dir {
		if m, err := v.read(p, e.Hash, ref); err != nil || m.Digest == ref.Digest {
			return m, err
		}
	} else if err != nil && !errors.Is(err, opm.ErrNotFound) {
		return nil, err
	}
	all, err := v.Manifests(ref.Repository)
	if err != nil {
		return nil, err
	}
	for _, m := range all {
		if m.Digest == ref.Digest && m.Ref.Tag != "" {
			return v.read(m.Path, m.ID, ref)
		}
	}
	return nil, opm.Errorf(opm.ErrNotFound, "%s: no manifest of %s has this digest", ref, ref.Repository)
}

// read reads and checks the manifest file p (git blob id) as the
// reference ref (layout.Stored), parsing it only the first time its blob is
// read.
func (v *View) read(p string, id Hash, ref opm.Reference) (*layout.StoredManifest, error) {
	pm := v.r.manifests.get(id)
	if pm == nil {
		body, err := v.snap.ReadFile(p)
		if err != nil {
			return nil, err
		}
		pm = &parsedManifest{body: body, digest: digest.FromBytes(body)}
		pm.m, pm.err = opm.ParseAnyManifest(body, "")
		v.r.parses.Add(1)
		v.r.manifests.put(id, pm)
		v.r.digests.put(id, pm.digest)
	}
	return layout.Stored(p, id, ref, pm.body, pm.digest, pm.m, pm.err), nil
}

// ManifestEntry is one manifest file of a repository, as listed.
type ManifestEntry struct {
	Path   string
	Ref    opm.Reference // a tag, or the digest of a manifest kept by digest
	ID     Hash
	Digest digest.Digest
}

// Manifests lists every manifest file of a repository: its tags (sorted),
// then the manifests kept by digest, each with the digest of its bytes
// (read once per git blob, then remembered).
func (v *View) Manifests(repo opm.Repository) ([]ManifestEntry, error) {
	tags, err := v.manifestsIn(layout.TagsDir(repo))
	if err != nil {
		return nil, err
	}
	kept, err := v.manifestsIn(layout.ManifestsDir(repo))
	return append(tags, kept...), err
}

// manifestsIn lists the manifest files of one directory of a repository
// (its tags, or its manifests kept by digest), as Manifests does.
func (v *View) manifestsIn(dir string) ([]ManifestEntry, error) {
	entries, err := v.snap.ReadDir(dir)
	if errors.Is(err, opm.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []ManifestEntry
	for _, e := range entries {
		p, err := layout.Parse(dir + "/" + e.Name)
		if err != nil || !p.IsManifest() || e.Dir {
			continue
		}
		me := ManifestEntry{Path: dir + "/" + e.Name, Ref: p.Ref, ID: e.Hash}
		if me.Digest, err = v.fileDigest(me.Path, e.Hash); err != nil {
			return nil, err
		}
		out = append(out, me)
	}
	return out, nil
}

// Read reads and checks a manifest Manifests listed.
func (v *View) Read(e ManifestEntry) (*layout.StoredManifest, error) {
	return v.read(e.Path, e.ID, e.Ref)
}

// fileDigest is the sha256 digest of a file of the view, by its git blob.
func (v *View) fileDigest(p string, id Hash) (digest.Digest, error) {
	if d, ok := v.r.digests.get(id); ok {
		return d, nil
	}
	b, err := v.snap.ReadFile(p)
	if err != nil {
		return "", err
	}
	d := digest.FromBytes(b)
	v.r.digests.put(id, d)
	return d, nil
}

// Package is a resolved reference to an opm package: its manifest and where
// it came from.
type Package struct {
	Ref      opm.Reference
	Digest   digest.Digest
	Bytes    []byte
	Manifest *opm.Manifest
}

// Resolve finds the package a reference names in the head.
func (r *Registry) Resolve(ref opm.Reference) (*Package, error) {
	v, err := r.View()
	if err != nil {
		return nil, err
	}
	return v.Resolve(ref)
}

// Resolve finds the opm package a reference names: its manifest must be an
// opm package (an OCI image manifest whose files are its titled layers).
func (v *View) Resolve(ref opm.Reference) (*Package, error) {
	m, err := v.Manifest(ref)
	if errors.Is(err, opm.ErrNotFound) && ref.Tag != "" {
		return nil, v.Missing(ref, nil)
	}
	if err != nil {
		return nil, err
	}
	if m.Err != nil {
		return nil, fmt.Errorf("%s: %w", ref, m.Err)
	}
	pm, err := v.FilesView(ref.Repository, m)
	if err != nil {
		return nil, err
	}
	if m.Manifest.IsIndex() {
		if pm, err = v.indexView(ref, m.Manifest, 0); err != nil {
			return nil, err
		}
	}
	if pm == nil {
		return nil, opm.Errorf(opm.ErrInvalid, "%s: the manifest (%s) cannot be read as files (opm inspect %s shows it): %w", ref, m.Manifest.MediaType, ref, m.Manifest.FilesErr())
	}
	return &Package{Ref: ref, Digest: m.Digest, Bytes: m.Body, Manifest: pm}, nil
}

// FilesView is the manifest m of repo read as files (opm.AnyManifest's
// FilesView), with a Helm chart's own files beside its archive where its
// push stored them (withChartFiles); nil for an index.
func (v *View) FilesView(repo opm.Repository, m *layout.StoredManifest) (*opm.Manifest, error) {
	pm := m.Manifest.FilesView()
	if pm == nil || chartArchive(m.Manifest) == nil {
		return pm, nil
	}
	return v.withChartFiles(repo, m.Digest, pm)
}

// maxIndexDepth is how deep indexes in an index are read as directories.
const maxIndexDepth = 2

// indexView reads the index m (of ref's repository) as one package: the
// files of each manifest it names (opm.AnyManifest.FilesView; an index in
// it likewise, to maxIndexDepth) under a directory named by its platform —
// linux-amd64, linux-arm64-v8 — or, without one or for a second of the
// same platform, by the first 12 digits of its digest.
func (v *View) indexView(ref opm.Reference, m *opm.AnyManifest, depth int) (*opm.Manifest, error) {
	out := opm.Manifest{SchemaVersion: 2, MediaType: opm.MediaTypeManifest, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	used := map[string]bool{}
	for _, c := range m.Manifests {
		child, err := v.Manifest(opm.Reference{Repository: ref.Repository, Digest: c.Digest})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		if child.Err != nil {
			return nil, fmt.Errorf("%s: manifest %s: %w", ref, c.Digest, child.Err)
		}
		view := child.Manifest.FilesView()
		if child.Manifest.IsIndex() && depth < maxIndexDepth {
			if view, err = v.indexView(ref, child.Manifest, depth+1); err != nil {
				return nil, err
			}
		}
		if view == nil {
			continue
		}
		dir := strings.ReplaceAll(c.Platform.String(), "/", "-")
		if dir == "" || used[dir] || opm.ValidatePath(dir) != nil {
			dir = c.Digest.Encoded()[:12]
		}
		used[dir] = true
		if out.Config.Digest == "" {
			out.Config = view.Config // a blob of the registry, as every named one is
		}
		for _, l := range view.Layers {
			a := maps.Clone(l.Annotations)
			a[opm.AnnotationTitle] = dir + "/" + a[opm.AnnotationTitle]
			l.Annotations = a
			out.Layers = append(out.Layers, l)
		}
	}
	if out.Config.Digest == "" {
		return nil, opm.Errorf(opm.ErrInvalid, "%s: an index of %d manifest(s) none of which reads as files (opm inspect %s shows it)", ref, len(m.Manifests), ref)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return opm.ParseManifest(b)
}

// Walk calls fn for every manifest file of the view (see layout.Walk).
func (v *View) Walk(ctx context.Context, fn func(*layout.StoredManifest) error, odd func(layout.Oddity) error) error {
	return layout.Walk(ctx, gitTree{v.snap}, fn, odd)
}

// BlobUser names a manifest of the view that names the blob d (as config or
// layer), or "" if none does, by the rule gc keeps blobs by (namedBlobs): a
// manifest that does not parse may name d, and is an errUnknownBlobs error.
// It reads every manifest file.
func (v *View) BlobUser(ctx context.Context, d digest.Digest) (string, error) {
	errFound := errors.New("found")
	var user string
	err := v.Walk(ctx, func(m *layout.StoredManifest) error {
		blobs, err := namedBlobs(m.Path, m.Manifest, m.Err)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(blobs, func(b opm.Descriptor) bool { return b.Digest == d }) {
			user = m.Path
			return errFound
		}
		return nil
	}, nil)
	if errors.Is(err, errFound) {
		err = nil
	}
	return user, err
}

// Stale is what changed among the names of the tree from old to v (see
// layout.StaleNames), and how many files changed.
func (v *View) Stale(old *View) (layout.Stale, int, error) {
	diff, err := v.r.meta.Diff(old.Commit(), v.Commit())
	if err != nil {
		return layout.Stale{}, 0, err
	}
	changes := fileChanges(diff)
	stale := layout.StaleNames(gitTree{old.snap}, gitTree{v.snap}, changes)
	// A Helm chart's files (withChartFiles) added or removed on their own
	// change the files of the tags holding the chart.
	for _, c := range changes {
		p, err := layout.Parse(c.Path)
		if err != nil || p.Role != layout.RoleManifest {
			continue
		}
		in, id := v, Hash(c.New)
		if c.Removed() {
			in, id = old, Hash(c.Old)
		}
		m, err := in.read(c.Path, id, p.Ref)
		if err != nil {
			return layout.Stale{}, 0, err
		}
		if m.Manifest == nil || m.Manifest.ArtifactType != opm.ArtifactTypeChartFiles || m.Manifest.Subject == nil {
			continue
		}
		tags, err := v.Tags(p.Ref.Repository)
		if err != nil {
			return layout.Stale{}, 0, err
		}
		for _, t := range tags {
			ref := opm.Reference{Repository: p.Ref.Repository, Tag: t.Tag}
			d, err := v.fileDigest(layout.TagPath(ref.Repository, t.Tag), t.ID)
			if err != nil {
				return layout.Stale{}, 0, err
			}
			if d == m.Manifest.Subject.Digest && !slices.Contains(stale.Tags, ref) {
				stale.Tags = append(stale.Tags, ref)
			}
		}
	}
	return stale, len(diff), nil
}

// NodeMeta is the description file of a namespace, project or repository
// (namespace.json, project.json, repository.json), nil when it has none.
// One that breaks layout.CheckMeta (taken before the check, or committed
// here by git) counts as none: a larger one is not even read, so no page
// view costs more than a description may.
func (v *View) NodeMeta(parts []string) ([]byte, error) {
	p := layout.MetaPath(parts)
	b, err := v.snap.ReadSmallFile(p, layout.MaxMetaSize)
	if errors.Is(err, opm.ErrNotFound) || errors.Is(err, opm.ErrInvalid) {
		return nil, nil
	}
	if err == nil && layout.CheckMeta(p, len(parts), b) != nil {
		return nil, nil
	}
	return b, err
}
