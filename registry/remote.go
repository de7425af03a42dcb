package registry

// Remotes: a remote is another registry this home exchanges packages with,
// its metadata in a git repository and its blobs in a bucket. They are git
// configuration of meta.git:
//
//	[remote "origin"]
//		url = https://git.example.org/opm-meta.git   (local path, file://, git://, http(s)://, ssh://)
//		blobs = s3://opm-blobs?region=eu-west-1      (any gocloud.dev/blob URL)
//		fetch = +refs/heads/main:refs/remotes/origin/main
//
// A home with an origin publishes to it (Push: blobs to origin's bucket,
// then the commit locally, then the commit to origin's metadata) and follows
// it (SyncOrigin: fetch and fast-forward; blobs stay lazy, read from origin's
// bucket when opm.blobs is unset).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	formatcfg "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
)

// Origin is the remote a home publishes to and follows.
const Origin = "origin"

// Remote is a registry elsewhere: git metadata at URL, blobs in Blobs.
type Remote struct {
	Name  string `json:"name"`
	URL   string `json:"meta"`
	Blobs string `json:"blobs"`
}

// TrackingRef is the ref of meta.git that holds a remote's main as last
// fetched.
func TrackingRef(name string) plumbing.ReferenceName {
	return plumbing.ReferenceName("refs/remotes/" + name + "/main")
}

// blobsURL is the bucket of the home: opm.blobs, else origin's blobs.
func (r *Registry) blobsURL() (url, key string, err error) {
	for _, key := range []string{"opm.blobs", "remote." + Origin + ".blobs"} {
		url, err := r.Config(key)
		if err != nil || url != "" {
			return url, key, err
		}
	}
	return "", "", nil
}

// ValidateRemoteName refuses a remote name that is not a valid name part:
// it names directories of the home (mirrors/<name>.git,
// refs/remotes/<name>).
func ValidateRemoteName(name string) error {
	if !opm.ValidComponent(name) {
		return fmt.Errorf("remote name %q: want lower-case letters and digits, separated by '.', '_' or '-': %w", name, opm.ErrInvalid)
	}
	return nil
}

// normalizeMetaURL makes a local path absolute; URLs and scp-like
// addresses (user@host:path) are kept.
func normalizeMetaURL(u string) (string, error) {
	if u == "" {
		return "", fmt.Errorf("empty metadata URL: %w", opm.ErrInvalid)
	}
	if !IsLocalPath(u) {
		return u, nil
	}
	return filepath.Abs(u)
}

// IsLocalPath reports whether a metadata location is a local path rather
// than a URL (scheme://…) or an scp-like ssh address (user@host:path): it
// is one unless a ':' comes before any '/', and not first.
func IsLocalPath(u string) bool {
	i := strings.IndexAny(u, ":/")
	return i <= 0 || u[i] == '/'
}

// AddRemote records a remote. It fails with opm.ErrExists if the name is
// taken and opm.ErrInvalid if a URL cannot be used.
func (r *Registry) AddRemote(ctx context.Context, rm Remote) error {
	if err := ValidateRemoteName(rm.Name); err != nil {
		return err
	}
	var err error
	if rm.URL, err = normalizeMetaURL(rm.URL); err != nil {
		return err
	}
	if _, err := transport.NewEndpoint(rm.URL); err != nil {
		return fmt.Errorf("remote %s: metadata URL %q: %w: %w", rm.Name, rm.URL, err, opm.ErrInvalid)
	}
	if rm.Blobs == "" {
		return fmt.Errorf("remote %s: a bucket URL is needed (--blobs): %w", rm.Name, opm.ErrInvalid)
	}
	b, err := cas.OpenBucket(ctx, rm.Blobs)
	if err != nil {
		return fmt.Errorf("remote %s: bucket URL %q: %w: %w", rm.Name, rm.Blobs, err, opm.ErrInvalid)
	}
	b.Close()
	return r.updateConfig(func(cfg *formatcfg.Config) error {
		if cfg.Section("remote").HasSubsection(rm.Name) {
			return fmt.Errorf("remote %s: %w (opm remote rm %s first)", rm.Name, opm.ErrExists, rm.Name)
		}
		s := cfg.Section("remote").Subsection(rm.Name)
		s.SetOption("url", rm.URL)
		s.SetOption("blobs", rm.Blobs)
		s.SetOption("fetch", "+refs/heads/main:"+string(TrackingRef(rm.Name)))
		return nil
	})
}

// Remotes lists the configured remotes in config order.
func (r *Registry) Remotes() ([]Remote, error) {
	cfg, err := r.readConfig()
	if err != nil {
		return nil, err
	}
	var out []Remote
	for _, s := range cfg.Section("remote").Subsections {
		out = append(out, Remote{Name: s.Name, URL: s.Option("url"), Blobs: s.Option("blobs")})
	}
	return out, nil
}

// Remote returns the remote called name, or an opm.ErrNotFound error.
func (r *Registry) Remote(name string) (Remote, error) {
	rm, ok, err := r.remote(name)
	if err != nil {
		return Remote{}, err
	}
	if !ok {
		return Remote{}, fmt.Errorf("remote %s: %w (opm remote add %s --meta URL --blobs URL)", name, opm.ErrNotFound, name)
	}
	if err := rm.complete(); err != nil {
		return Remote{}, err
	}
	return rm, nil
}

func (rm Remote) complete() error {
	if rm.URL == "" || rm.Blobs == "" {
		return fmt.Errorf("remote %s: remote.%s.url and remote.%s.blobs must both be set: %w", rm.Name, rm.Name, rm.Name, opm.ErrInvalid)
	}
	return nil
}

// remote reads the configuration of the remote called name, and whether
// there is one. A name that is not a valid one (it names a directory of the
// home: mirrors/<name>.git, refs/remotes/<name>) is refused even if a
// hand-edited config holds it.
func (r *Registry) remote(name string) (Remote, bool, error) {
	if err := ValidateRemoteName(name); err != nil {
		return Remote{}, false, err
	}
	cfg, err := r.readConfig()
	if err != nil {
		return Remote{}, false, err
	}
	sec := cfg.Section("remote")
	if !sec.HasSubsection(name) {
		return Remote{}, false, nil
	}
	s := sec.Subsection(name)
	return Remote{Name: name, URL: s.Option("url"), Blobs: s.Option("blobs")}, true, nil
}

// MirrorScratch is the scratch repository of `opm sync SRC DST` into the
// remote dst (<home>/mirrors/<dst>.git).
func MirrorScratch(home, dst string) string { return filepath.Join(home, "mirrors", dst+".git") }

// RemoveRemote forgets a remote, its tracking ref and the scratch
// repository of mirrors into it.
func (r *Registry) RemoveRemote(name string) error {
	if err := ValidateRemoteName(name); err != nil {
		return err
	}
	err := r.updateConfig(func(cfg *formatcfg.Config) error {
		if !cfg.Section("remote").HasSubsection(name) {
			return fmt.Errorf("remote %s: %w", name, opm.ErrNotFound)
		}
		cfg.RemoveSubsection("remote", name)
		return nil
	})
	if err != nil {
		return err
	}
	err = os.Remove(filepath.Join(r.MetaDir(), filepath.FromSlash(string(TrackingRef(name)))))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Renamed aside first, in one step: a later mirror into a remote of the
	// same name starts afresh even if removing the files fails or a mirror
	// still running holds them (it fails; the destination keeps its blobs
	// first, metadata last order).
	scratch := MirrorScratch(r.Dir, name)
	aside := fmt.Sprintf("%s.removed-%d", scratch, time.Now().UnixNano())
	if err := os.Rename(scratch, aside); err == nil {
		err = os.RemoveAll(aside)
		if err != nil {
			slog.Warn("remote removed, but not its scratch repository", "dir", aside, "err", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		slog.Warn("remote removed, but not its scratch repository", "dir", scratch, "err", err)
	}
	return nil
}

// origin returns the home's origin, if it has one (a remote.origin.url).
func (r *Registry) origin() (Remote, bool, error) {
	rm, ok, err := r.remote(Origin)
	if err != nil || !ok || rm.URL == "" {
		return Remote{}, false, err
	}
	if err := rm.complete(); err != nil {
		return Remote{}, false, err
	}
	return rm, true, nil
}

// ErrRemoteMoved reports a push that lost the race: the remote's main is no
// longer the commit the pushed one was built on.
var ErrRemoteMoved = fmt.Errorf("the remote's main moved: %w", opm.ErrConflict)

// FetchMain fetches main of the git repository at url into the ref into of
// the bare repository gitDir and returns the commit it names, zero if the
// remote has no main yet. go-git writes the objects as a packfile, which
// gitmeta finds when it re-reads the pack indexes.
func FetchMain(ctx context.Context, gitDir, url string, into plumbing.ReferenceName) (plumbing.Hash, error) {
	finish, err := gitmeta.BeginFetch(ctx, gitDir)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	dropBrokenTrackingRefs(gitDir)
	repo, err := gogit.PlainOpen(gitDir)
	if err != nil {
		finish()
		return plumbing.ZeroHash, fmt.Errorf("open %s: %w", gitDir, err)
	}
	rem := gogit.NewRemote(repo.Storer, &config.RemoteConfig{Name: "opm", URLs: []string{url}})
	err = rem.FetchContext(ctx, &gogit.FetchOptions{
		RemoteName: "opm",
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + string(gitmeta.Branch) + ":" + string(into))},
		Tags:       gogit.NoTags,
	})
	if ferr := finish(); ferr != nil {
		// The tracking ref go-git moved may name objects not on disk:
		// forget it, so that the next fetch brings them again.
		os.Remove(filepath.Join(gitDir, filepath.FromSlash(string(into))))
		if err == nil {
			err = ferr
		}
	}
	switch {
	case err == nil, errors.Is(err, gogit.NoErrAlreadyUpToDate):
	case errors.Is(err, transport.ErrEmptyRemoteRepository), errors.Is(err, gogit.NoMatchingRefSpecError{}):
		return plumbing.ZeroHash, nil
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w: %w", url, err, opm.ErrNotFound)
	default:
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", url, err)
	}
	ref, err := repo.Storer.Reference(into)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %s: %w", url, into, err)
	}
	return ref.Hash(), nil
}

// dropBrokenTrackingRefs removes the tracking refs (refs/remotes/…) whose
// file holds no hash. go-git rewrites a ref file in place (truncate, then
// write): a process killed in between leaves it empty, and every later
// fetch would then fail with "ref file is empty". A tracking ref only
// records where a remote's main was; the fetch writes it again.
func dropBrokenTrackingRefs(gitDir string) {
	filepath.WalkDir(filepath.Join(gitDir, "refs", "remotes"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if s := strings.TrimSpace(string(b)); err == nil && !plumbing.IsHash(s) && !strings.HasPrefix(s, "ref: ") {
			slog.Warn("removing a broken tracking ref (left by an interrupted fetch)", "ref", p, "content", s)
			os.Remove(p)
		}
		return nil
	})
}

// PushMain makes main of the git repository at url the commit `commit` of
// gitDir. old is the remote's main the commit was built on: if the push is
// refused and the remote's main is no longer old, PushMain fails with
// ErrRemoteMoved. Unless force, the update must be a fast-forward.
func PushMain(ctx context.Context, gitDir, url string, old, commit plumbing.Hash, force bool) error {
	if old == commit {
		return nil
	}
	repo, err := gogit.PlainOpen(gitDir)
	if err != nil {
		return fmt.Errorf("open %s: %w", gitDir, err)
	}
	rem := gogit.NewRemote(repo.Storer, &config.RemoteConfig{Name: "opm", URLs: []string{url}})
	spec := commit.String() + ":" + string(gitmeta.Branch)
	if force {
		spec = "+" + spec
	}
	err = rem.PushContext(ctx, &gogit.PushOptions{RemoteName: "opm", RefSpecs: []config.RefSpec{config.RefSpec(spec)}})
	if err == nil || errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return nil
	}
	// Tell a lost race from a failure: where is the remote's main now?
	refs, lerr := rem.ListContext(ctx, &gogit.ListOptions{})
	var now plumbing.Hash
	if lerr == nil {
		for _, ref := range refs {
			if ref.Name() == gitmeta.Branch {
				now = ref.Hash()
			}
		}
	}
	if lerr == nil && now == commit {
		return nil
	}
	if lerr == nil && now != old {
		return fmt.Errorf("push %s: %w", url, ErrRemoteMoved)
	}
	return fmt.Errorf("push %s: %w", url, err)
}

// originBucket returns the bucket to upload to for origin and whether it
// is another than the home's own (which storeBlobs already filled).
func (r *Registry) originBucket(ctx context.Context, o Remote) (*cas.Bucket, bool, error) {
	url, _, err := r.blobsURL()
	if err != nil {
		return nil, false, err
	}
	if url == o.Blobs && r.Bucket != nil {
		return r.Bucket, false, nil
	}
	b, err := cas.OpenBucket(ctx, o.Blobs)
	if err != nil {
		return nil, false, fmt.Errorf("bucket %s (remote.%s.blobs): %w", o.Blobs, o.Name, err)
	}
	return b, true, nil
}

// uploadBlobs puts into b, in parallel, the blobs it lacks from the local
// store. A blob b has costs one existence check (Put's) and no local read.
func (r *Registry) uploadBlobs(ctx context.Context, b *cas.Bucket, blobs []opm.Descriptor) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, d := range blobs {
		g.Go(func() error {
			defer r.UseBlob(d.Digest)() // not evicted between the fetch and the read
			_, err := PutFrom(ctx, b, d.Digest, d.Size, func() (io.ReadCloser, error) {
				if err := r.EnsureLocal(ctx, d.Digest); err != nil {
					return nil, err
				}
				return r.Local.Open(ctx, d.Digest)
			})
			if err != nil {
				return fmt.Errorf("upload %s: %w", d.Digest, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// PutFrom puts the blob d of size bytes into dst unless dst has it, opening its source
// only once dst.Put starts reading (Put returns without reading when the
// blob is there already): a blob dst has costs one existence check and no
// read. opened reports whether open was called; an error of open or of
// reading the source is returned as it is, not as dst's.
func PutFrom(ctx context.Context, dst cas.Pusher, d digest.Digest, size int64, open func() (io.ReadCloser, error)) (opened bool, err error) {
	lr := &lazyReader{open: open}
	defer lr.Close()
	err = dst.Put(ctx, d, size, lr)
	if lr.err != nil {
		err = lr.err
	}
	return lr.rc != nil || lr.openErr != nil, err
}

// lazyReader opens its source on the first Read and remembers the source's
// error.
type lazyReader struct {
	open    func() (io.ReadCloser, error)
	rc      io.ReadCloser
	openErr error
	err     error // the source's, from open or Read (not io.EOF)
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.rc == nil {
		if l.openErr == nil {
			l.rc, l.openErr = l.open()
		}
		if l.openErr != nil {
			l.err = l.openErr
			return 0, l.openErr
		}
	}
	n, err := l.rc.Read(p)
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

func (l *lazyReader) Close() error {
	if l.rc != nil {
		return l.rc.Close()
	}
	return nil
}

// TagChange is a manifest file that differs between two commits: a tag
// file, or a manifest kept by digest.
type TagChange struct {
	Ref  string // ns/project/repo:tag, or ns/project/repo@sha256:<hex>
	Path string // its file in the metadata
	// Body is the manifest at the newer commit, Blobs the blobs it names;
	// both are nil for a removed file.
	Body  []byte
	Blobs []opm.Descriptor
}

// ChangedTags lists the manifest files that differ from commit a to commit
// b of repo (either may be zero, the empty repository), with their
// manifests at b: the tag files whose references match (nil matches every
// tag) and, when match is nil, the manifests kept by digest too (what a
// commit carries whole must have its blobs). Only the subtrees that differ
// are read.
func ChangedTags(repo *gitmeta.Repo, a, b plumbing.Hash, match func(ref string) bool) ([]TagChange, error) {
	diff, err := repo.Diff(a, b)
	if err != nil {
		return nil, err
	}
	snap, err := repo.Snapshot(b)
	if err != nil {
		return nil, err
	}
	var out []TagChange
	for _, d := range diff {
		ref, byDigest, ok := ManifestOfPath(d.Path)
		if !ok || match != nil && (byDigest || !match(ref)) {
			continue
		}
		parsed, err := opm.ParseReference(ref)
		if err != nil {
			return nil, fmt.Errorf("metadata file %q: %w", d.Path, err)
		}
		c := TagChange{Ref: ref, Path: d.Path}
		if !d.New.IsZero() {
			if c.Body, err = snap.ReadFile(d.Path); err != nil {
				return nil, err
			}
			// Any manifest the registry accepts (an opm package is
			// checked in full: titles, links, sizes).
			m, err := opm.ParseAnyManifest(c.Body, "")
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ref, err)
			}
			if byDigest && digest.FromBytes(c.Body) != parsed.Digest {
				return nil, fmt.Errorf("%s: content hashes to %s: %w", ref, digest.FromBytes(c.Body), opm.ErrIntegrity)
			}
			c.Blobs = m.Blobs()
		}
		out = append(out, c)
	}
	return out, nil
}

// changedBlobs lists the blobs named by the tag files that differ from
// commit a to commit b of repo (set or changed in b).
func changedBlobs(repo *gitmeta.Repo, a, b plumbing.Hash) ([]opm.Descriptor, error) {
	changes, err := ChangedTags(repo, a, b, nil)
	if err != nil {
		return nil, err
	}
	seen := map[digest.Digest]bool{}
	var out []opm.Descriptor
	for _, c := range changes {
		for _, bl := range c.Blobs {
			if !seen[bl.Digest] {
				seen[bl.Digest] = true
				out = append(out, bl)
			}
		}
	}
	return out, nil
}

// TagOfPath turns a tag file's path (ns/project/repo/tags/<tag>.json) into
// its reference ns/project/repo:tag; false for any other path.
func TagOfPath(p string) (string, bool) {
	ref, byDigest, ok := ManifestOfPath(p)
	return ref, ok && !byDigest
}

// ManifestOfPath turns the path of a manifest file of the metadata into
// its reference: ns/project/repo:tag for a tag file
// (ns/project/repo/tags/<tag>.json), ns/project/repo@sha256:<hex> for a
// manifest kept by digest (ns/project/repo/manifests/<hex>.json). The names
// are not checked.
func ManifestOfPath(p string) (ref string, byDigest, ok bool) {
	parts := strings.Split(p, "/")
	if len(parts) != 5 {
		return "", false, false
	}
	name, isJSON := strings.CutSuffix(parts[4], ".json")
	repo := strings.Join(parts[:3], "/")
	switch {
	case !isJSON:
	case parts[3] == "tags":
		return repo + ":" + name, false, true
	case parts[3] == "manifests":
		return repo + "@sha256:" + name, true, true
	}
	return "", false, false
}

// MatchTag reports whether the reference ns/project/repo:tag matches a
// path.Match pattern. A pattern without ':' is matched against the
// repository, so "acme/*/*" selects every tag of acme's repositories.
func MatchTag(pattern, ref string) bool {
	if pattern == "" {
		return true
	}
	if !strings.Contains(pattern, ":") {
		ref, _, _ = strings.Cut(ref, ":")
	}
	ok, _ := path.Match(pattern, ref)
	return ok
}

// ValidatePattern refuses a malformed path.Match pattern.
func ValidatePattern(pattern string) error {
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("pattern %q: %w: %w", pattern, err, opm.ErrInvalid)
	}
	return nil
}

// pushAttempts bounds the replays of a push that keeps losing the race.
const pushAttempts = 10

// publishTag is Push's last step in a home with an origin: bring local main
// up to origin's, commit the tag locally, push the commit to origin, and on
// a lost race replay the change on origin's new head. The package's blobs
// are in origin's bucket before origin's metadata names them.
func (r *Registry) publishTag(ctx context.Context, o Remote, ref opm.Reference, body []byte, m *opm.Manifest, subject string, force bool) (plumbing.Hash, digest.Digest, bool, error) {
	b, own, err := r.originBucket(ctx, o)
	if err != nil {
		return plumbing.ZeroHash, "", false, err
	}
	if own {
		defer b.Close()
		if err := r.uploadBlobs(ctx, b, m.Blobs()); err != nil {
			return plumbing.ZeroHash, "", false, err
		}
	}
	remote, err := r.followOrigin(ctx, o, false)
	if err != nil {
		return plumbing.ZeroHash, "", false, err
	}
	local, err := r.Meta.Head()
	if err != nil {
		return plumbing.ZeroHash, "", false, err
	}
	if local != remote {
		// Unpushed local commits go along: their blobs go first.
		blobs, err := changedBlobs(r.Meta, remote, local)
		if err != nil {
			return plumbing.ZeroHash, "", false, err
		}
		if err := r.uploadBlobs(ctx, b, blobs); err != nil {
			return plumbing.ZeroHash, "", false, err
		}
	}
	commit, prev, committed, err := r.setTag(ctx, ref, body, subject, nil)
	if err != nil {
		return commit, prev, committed, err
	}
	p := opm.TagPath(ref.Repository, ref.Tag)
	dgst := digest.FromBytes(body)
	for attempt := 0; ; attempt++ {
		err := PushMain(ctx, r.MetaDir(), o.URL, remote, commit, false)
		if err == nil {
			// Record what origin now holds, as a fetch would.
			r.setTracking(o.Name, commit)
			return commit, prev, committed, nil
		}
		if !errors.Is(err, ErrRemoteMoved) || attempt+1 == pushAttempts {
			return commit, prev, committed, fmt.Errorf("%s committed locally but not published to %s: %w", ref, o.Name, err)
		}
		// Lost the race: replay the tag change on origin's new head.
		if local != remote {
			return commit, prev, committed, fmt.Errorf("%s: origin moved and this home has other unpublished commits; run opm sync --force to take origin's main, then push again: %w", ref, opm.ErrConflict)
		}
		newRemote, err := FetchMain(ctx, r.MetaDir(), o.URL, TrackingRef(o.Name))
		if err != nil {
			return commit, prev, committed, err
		}
		if err := r.Meta.SetHead(ctx, commit, newRemote); err != nil {
			return commit, prev, committed, err
		}
		remote, local = newRemote, newRemote
		var replayed bool
		commit, replayed, err = r.Meta.Update(ctx, r.Author(ctx), func(s *gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
			cur, err := tagDigest(s, p)
			if err != nil {
				return nil, gitmeta.Message{}, err
			}
			if cur == dgst {
				return nil, gitmeta.Message{Subject: subject}, nil // the other writer pushed the same
			}
			if cur != prev && !force {
				return nil, gitmeta.Message{}, fmt.Errorf("%s was changed on %s by another writer (now %s, was %s when this push began); --force replaces it: %w", ref, o.Name, orNone(cur), orNone(prev), opm.ErrConflict)
			}
			msg := gitmeta.Message{Subject: subject, Trailers: []gitmeta.Trailer{{Key: "Opm-Digest", Value: dgst.String()}}}
			if cur != "" {
				msg.Trailers = append(msg.Trailers, gitmeta.Trailer{Key: "Opm-Previous", Value: cur.String()})
			}
			prev = cur
			return []gitmeta.Change{{Path: p, Data: body}}, msg, nil
		})
		if err != nil {
			return commit, prev, false, err
		}
		if !replayed {
			return commit, prev, false, nil
		}
	}
}

// setTracking records the commit a remote's main is known to hold.
func (r *Registry) setTracking(name string, h plumbing.Hash) {
	repo, err := gogit.PlainOpen(r.MetaDir())
	if err == nil {
		repo.Storer.SetReference(plumbing.NewHashReference(TrackingRef(name), h))
	}
}

// followOrigin fetches origin's main and fast-forwards local main to it.
// Local commits origin lacks are kept (they are published by the next
// push); a local main that diverged from origin's is an opm.ErrConflict
// error unless force, which takes origin's. It returns origin's head.
func (r *Registry) followOrigin(ctx context.Context, o Remote, force bool) (plumbing.Hash, error) {
	remote, err := FetchMain(ctx, r.MetaDir(), o.URL, TrackingRef(o.Name))
	if err != nil {
		return plumbing.ZeroHash, err
	}
	for {
		local, err := r.Meta.Head()
		if err != nil {
			return remote, err
		}
		if local == remote {
			return remote, nil
		}
		if _, ok, err := r.Meta.Ahead(ctx, remote, local); err != nil {
			return remote, err
		} else if ok {
			return remote, nil // local is ahead
		}
		if _, ok, err := r.Meta.Ahead(ctx, local, remote); err != nil {
			return remote, err
		} else if !ok && !force {
			return remote, fmt.Errorf("this home's main and %s's have diverged (local commits %s lacks); opm sync --force takes %s's and drops them: %w", o.Name, o.Name, o.Name, opm.ErrConflict)
		}
		// Nothing a push would refuse is taken (a hostile or broken
		// writer at origin): every tag file that changes is checked.
		if _, err := ChangedTags(r.Meta, local, remote, nil); err != nil {
			return remote, fmt.Errorf("%s's main (%s) was not taken: %w", o.Name, remote.String()[:12], err)
		}
		err = r.Meta.SetHead(ctx, local, remote)
		if err == nil || !errors.Is(err, opm.ErrConflict) {
			return remote, err
		}
		// A local writer moved main meanwhile: look again.
	}
}

// SyncResult says what SyncOrigin did.
type SyncResult struct {
	Remote     string `json:"remote"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Commits    int    `json:"commits"` // fetched commits now on local main
	Ahead      int    `json:"ahead"`   // local commits origin lacks
	Prefetched int    `json:"prefetched_blobs,omitempty"`
	Bytes      int64  `json:"prefetched_bytes,omitempty"`
}

// SyncOrigin brings local main up to origin's (see followOrigin). With
// prefetch, the blobs of the tags matching pattern ("" is all) are then
// downloaded into the local store; otherwise they are fetched on first use.
func (r *Registry) SyncOrigin(ctx context.Context, force, prefetch bool, pattern string, progress Progress) (*SyncResult, error) {
	if err := ValidatePattern(pattern); err != nil {
		return nil, err // before main moves
	}
	o, ok, err := r.origin()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("this home has no origin: opm remote add origin --meta URL --blobs URL: %w", opm.ErrNotFound)
	}
	before, err := r.Meta.Head()
	if err != nil {
		return nil, err
	}
	remote, err := r.followOrigin(ctx, o, force)
	if err != nil {
		return nil, err
	}
	after, err := r.Meta.Head()
	if err != nil {
		return nil, err
	}
	res := &SyncResult{Remote: o.Name, Before: before.String(), After: after.String()}
	if n, ok, err := r.Meta.Ahead(ctx, before, after); err == nil && ok {
		res.Commits = n
	}
	if n, ok, err := r.Meta.Ahead(ctx, remote, after); err == nil && ok {
		res.Ahead = n
	}
	if prefetch {
		res.Prefetched, res.Bytes, err = r.prefetch(ctx, after, pattern, progress)
	}
	return res, err
}

// prefetch makes local the blobs of the tags of commit that match pattern.
func (r *Registry) prefetch(ctx context.Context, commit plumbing.Hash, pattern string, progress Progress) (int, int64, error) {
	if r.cache == nil {
		return 0, 0, nil // everything is local already
	}
	// Every tag file is a change from the empty tree.
	changes, err := ChangedTags(r.Meta, plumbing.ZeroHash, commit, func(ref string) bool { return MatchTag(pattern, ref) })
	if err != nil {
		return 0, 0, err
	}
	seen := map[digest.Digest]bool{}
	var want []opm.Descriptor
	var total int64
	for _, c := range changes {
		for _, b := range c.Blobs {
			if seen[b.Digest] {
				continue
			}
			seen[b.Digest] = true
			if !r.Local.Has(b.Digest) {
				want = append(want, b)
				total += b.Size
			}
		}
	}
	if progress != nil {
		progress.Start(len(want), total)
		defer progress.Done()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * runtime.GOMAXPROCS(0))
	for _, b := range want {
		g.Go(func() error {
			if err := r.cache.Fetch(gctx, b.Digest); err != nil {
				return err
			}
			if progress != nil {
				progress.Add(b.Size)
			}
			return nil
		})
	}
	return len(want), total, g.Wait()
}
