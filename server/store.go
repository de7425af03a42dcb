package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/registry"
)

// stored is one manifest of a repository as found in a snapshot.
type stored struct {
	path   string
	tag    string // "" for a manifest kept by digest
	digest digest.Digest
}

// fileDigest is the sha256 digest of a file of the snapshot, cached by its
// git blob hash.
func (s *Server) fileDigest(snap *gitmeta.Snapshot, p string, e gitmeta.Entry) (digest.Digest, error) {
	if d, ok := s.digests.get(e.Hash); ok {
		return digest.Digest(d), nil
	}
	b, err := snap.ReadFile(p)
	if err != nil {
		return "", err
	}
	d := digest.FromBytes(b)
	s.digests.put(e.Hash, string(d))
	return d, nil
}

// manifests lists every manifest of a repository: its tags, then the
// manifests kept by digest. A missing repository has none.
func (s *Server) manifests(snap *gitmeta.Snapshot, repo opm.Repository) ([]stored, error) {
	var out []stored
	for _, dir := range []string{opm.TagsDir(repo), opm.ManifestsDir(repo)} {
		entries, err := snap.ReadDir(dir)
		if errors.Is(err, opm.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		isTags := dir == opm.TagsDir(repo)
		for _, e := range entries {
			st := stored{path: dir + "/" + e.Name}
			if isTags {
				t, ok := registry.TagOfEntry(e)
				if !ok {
					continue
				}
				st.tag = t
			} else if e.Dir || !strings.HasSuffix(e.Name, ".json") {
				continue
			}
			d, err := s.fileDigest(snap, st.path, e)
			if err != nil {
				return nil, err
			}
			st.digest = d
			out = append(out, st)
		}
	}
	return out, nil
}

// manifestFile is a manifest read from a snapshot, with what GET answers.
type manifestFile struct {
	bytes     []byte
	digest    digest.Digest
	mediaType string
}

// fileCache keeps manifest files read from the current head: a GET by tag
// then costs a read of refs/heads/main and a map lookup, not a walk of git
// trees behind the repository's lock nor a hash. It is dropped when the
// head moves.
type fileCache struct {
	mu     sync.Mutex
	commit plumbing.Hash
	files  map[string]*manifestFile
	bytes  int
}

const fileCacheMax = 64 << 20

func (s *Server) readFile(snap *gitmeta.Snapshot, p string) (*manifestFile, error) {
	c := &s.files
	c.mu.Lock()
	if c.commit != snap.Commit() {
		c.commit, c.files, c.bytes = snap.Commit(), map[string]*manifestFile{}, 0
	}
	mf, ok := c.files[p]
	c.mu.Unlock()
	if ok {
		return mf, nil
	}
	b, err := snap.ReadFile(p)
	if err != nil {
		return nil, err
	}
	mf = &manifestFile{bytes: b, digest: digest.FromBytes(b), mediaType: manifestType(b)}
	c.add(snap, p, mf)
	return mf, nil
}

// add keeps mf as the file at p of snap, if snap is still the cached head
// and there is room.
func (c *fileCache) add(snap *gitmeta.Snapshot, p string, mf *manifestFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.commit == snap.Commit() && c.bytes+len(mf.bytes) <= fileCacheMax {
		c.files[p] = mf
		c.bytes += len(mf.bytes)
	}
}

// snapshot is the registry's head, the view reused while the head stays.
func (s *Server) snapshot() (*gitmeta.Snapshot, error) {
	h, err := s.reg.Meta.Head()
	if err != nil {
		return nil, err
	}
	s.snapMu.Lock()
	snap := s.snap
	s.snapMu.Unlock()
	if snap != nil && snap.Commit() == h {
		return snap, nil
	}
	if snap, err = s.reg.Meta.Snapshot(h); err != nil {
		return nil, err
	}
	s.snapMu.Lock()
	s.snap = snap
	s.snapMu.Unlock()
	return snap, nil
}

// readManifest finds the manifest a tag or digest of repo names in snap.
func (s *Server) readManifest(snap *gitmeta.Snapshot, repo opm.Repository, tag string, d digest.Digest) (*manifestFile, error) {
	if tag != "" {
		mf, err := s.readFile(snap, opm.TagPath(repo, tag))
		if errors.Is(err, opm.ErrNotFound) {
			return nil, fmt.Errorf("%s:%s: no such tag: %w", repo, tag, opm.ErrNotFound)
		}
		return mf, err
	}
	if mf, err := s.readFile(snap, opm.ManifestPath(repo, d)); err == nil {
		return mf, nil
	} else if !errors.Is(err, opm.ErrNotFound) {
		return nil, err
	}
	all, err := s.manifests(snap, repo)
	if err != nil {
		return nil, err
	}
	for _, m := range all {
		if m.digest == d {
			mf, err := s.readFile(snap, m.path)
			if err == nil {
				// The next GET of d in this head finds it at once.
				s.files.add(snap, opm.ManifestPath(repo, d), mf)
			}
			return mf, err
		}
	}
	return nil, fmt.Errorf("%s@%s: %w", repo, d, opm.ErrNotFound)
}

// putManifest commits body under tags (or, with none, under its digest):
// one commit, nothing when all are already there. A tag changed by another
// writer while this one ran is a conflict.
func (s *Server) putManifest(ctx context.Context, repo opm.Repository, tags []string, body []byte) (bool, error) {
	d := digest.FromBytes(body)
	paths, subject := []string{opm.ManifestPath(repo, d)}, fmt.Sprintf("push %s@%s", repo, d)
	if len(tags) > 0 {
		paths = paths[:0]
		for _, t := range tags {
			paths = append(paths, opm.TagPath(repo, t))
		}
		subject = fmt.Sprintf("push %s:%s", repo, strings.Join(tags, ","))
	}
	var seen map[string]digest.Digest // each path's digest on the first attempt
	_, committed, err := s.reg.Meta.Update(ctx, s.reg.Author(ctx), func(snap *gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		msg := gitmeta.Message{Subject: subject, Trailers: []gitmeta.Trailer{{Key: "Opm-Digest", Value: d.String()}}}
		first := seen == nil
		if first {
			seen = map[string]digest.Digest{}
		}
		var changes []gitmeta.Change
		for _, p := range paths {
			var cur digest.Digest
			b, err := snap.ReadFile(p)
			switch {
			case err == nil:
				cur = digest.FromBytes(b)
			case !errors.Is(err, opm.ErrNotFound):
				return nil, gitmeta.Message{}, err
			}
			if first {
				seen[p] = cur
			} else if cur != seen[p] {
				return nil, gitmeta.Message{}, fmt.Errorf("%s was changed by another writer meanwhile: %w", p, opm.ErrConflict)
			}
			if cur == d {
				continue
			}
			if cur != "" && len(paths) == 1 {
				msg.Trailers = append(msg.Trailers, gitmeta.Trailer{Key: "Opm-Previous", Value: cur.String()})
			}
			changes = append(changes, gitmeta.Change{Path: p, Data: body})
		}
		msg.Trailers = append(msg.Trailers, gitmeta.Trailer{Key: "Opm-Via", Value: "oci"})
		return changes, msg, nil
	})
	return committed, err
}

// deleteManifest removes a tag (registry.Remove), or (tag "") the manifest
// d: every tag that holds it and its copy kept by digest, in one commit.
func (s *Server) deleteManifest(ctx context.Context, repo opm.Repository, tag string, d digest.Digest) error {
	if tag != "" {
		_, err := s.reg.Remove(ctx, opm.Reference{Repository: repo, Tag: tag})
		return err
	}
	_, _, err := s.reg.Meta.Update(ctx, s.reg.Author(ctx), func(snap *gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		all, err := s.manifests(snap, repo)
		if err != nil {
			return nil, gitmeta.Message{}, err
		}
		var changes []gitmeta.Change
		var tags []string
		for _, m := range all {
			if m.digest == d {
				changes = append(changes, gitmeta.Change{Path: m.path, Delete: true})
				if m.tag != "" {
					tags = append(tags, m.tag)
				}
			}
		}
		if len(changes) == 0 {
			return nil, gitmeta.Message{}, fmt.Errorf("%s@%s: %w", repo, d, opm.ErrNotFound)
		}
		sort.Strings(tags)
		msg := gitmeta.Message{Subject: fmt.Sprintf("rm %s@%s", repo, d),
			Trailers: []gitmeta.Trailer{{Key: "Opm-Previous", Value: d.String()}, {Key: "Opm-Via", Value: "oci"}}}
		if len(tags) > 0 {
			msg.Body = "tags: " + strings.Join(tags, " ")
		}
		return changes, msg, nil
	})
	return err
}

// blobUsers names a manifest anywhere in snap that names blob d (as config
// or layer), or "" if none does. It reads every manifest: deleting a blob is
// rare and must be sure.
func (s *Server) blobUser(snap *gitmeta.Snapshot, d digest.Digest) (string, error) {
	var found string
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		entries, err := snap.ReadDir(dir)
		if errors.Is(err, opm.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if found != "" {
				return nil
			}
			p := e.Name
			if dir != "" {
				p = dir + "/" + e.Name
			}
			if depth < 3 {
				if e.Dir {
					if err := walk(p, depth+1); err != nil {
						return err
					}
				}
				continue
			}
			// depth 3: a repository directory; its tags and manifests.
			if !e.Dir || (e.Name != "tags" && e.Name != "manifests") {
				continue
			}
			files, err := snap.ReadDir(p)
			if err != nil {
				return err
			}
			for _, f := range files {
				if f.Dir {
					continue
				}
				b, err := snap.ReadFile(p + "/" + f.Name)
				if err != nil {
					return err
				}
				if !bytes.Contains(b, []byte(d.Encoded())) {
					continue
				}
				m, err := opm.ParseAnyManifest(b, "")
				if err != nil {
					continue
				}
				for _, bl := range m.Blobs() {
					if bl.Digest == d {
						found = p + "/" + f.Name
						return nil
					}
				}
			}
		}
		return nil
	}
	// depth counts the parts of dir: "" is 0, ns 1, ns/p 2, ns/p/r 3.
	return found, walk("", 0)
}
