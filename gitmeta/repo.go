// Package gitmeta keeps the registry's metadata as files in a bare git
// repository: every change is one commit on branch main, written with go-git
// plumbing straight into the object store and published with a
// compare-and-set on refs/heads/main that is safe across processes and
// interoperates with the git CLI.
//
// gitmeta is generic over paths; it knows nothing of manifests. The layout
// the registry keeps in it is drawn once, in package layout (and
// docs/design.md §3); the home around the repository in registry/paths.go.
//
// # Costs
//
// A commit builds only the trees along each changed path and reuses every
// other subtree hash, so its cost is that of the directories along the
// changed paths (dominated by the largest one, typically a tags/ directory),
// not of the registry. Reads likewise decode only the trees along the path.
//
// # Concurrency
//
// go-git objects are not safe for concurrent use, so a Repo keeps one storage
// handle behind a mutex. Updates through one Repo are serialised; updates
// through different Repos or processes (or the git CLI) race on refs/heads/main.lock,
// git's own lock file, and the loser rebuilds its commit on the new head.
//
// # Durability
//
// go-git writes a loose object to a temporary file and renames it into place
// but never fsyncs: after a power loss a ref could name an empty object file.
// gitmeta therefore writes its own loose objects (see writeLoose): each file
// is fsynced before its rename, and the fan-out directories after, all before
// the ref is published; the ref itself is fsynced before its rename and its
// directory after. The fsyncs of one commit run concurrently so that ext4 can
// share journal commits. Measured on this project's ext4 virtual disk, the
// fsyncs cost a few milliseconds of an Update (see BenchmarkUpdate100kTags).
//
// Loose objects are never packed by gitmeta: run `git gc` on the repository
// now and then, as for any git repository.
package gitmeta

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/openpm/opm"
)

// Hash names a git object: a commit, a tree or a blob. Other packages name
// commits and files by it without importing go-git.
type Hash = plumbing.Hash

// ZeroHash is the hash of no object: the empty history.
var ZeroHash = plumbing.ZeroHash

// Branch is the reference that holds the registry's metadata.
const Branch = plumbing.ReferenceName("refs/heads/main")

// Cache sizes. Decoded trees are cached by gitmeta itself (a 10k-entry tags
// tree takes ~5ms to inflate and decode); go-git's cache of raw objects then
// mostly serves blobs.
const (
	treeCacheEntries = 1 << 20 // ~100 MB at most
	objectCacheSize  = 16 * cache.MiByte
)

// Repo is an open metadata repository. It is safe for concurrent use.
type Repo struct {
	path string

	mu    sync.Mutex // guards st and trees: go-git storage is not safe for concurrent use
	st    *filesystem.Storage
	trees *treeCache

	writer chan struct{} // a token held by the one Update running in this process
}

// Init creates a bare repository at path with HEAD pointing at refs/heads/main
// if there is none yet, then opens it.
func Init(path string) (*Repo, error) {
	if _, err := os.Stat(filepath.Join(path, "HEAD")); err == nil {
		return Open(path)
	}
	_, err := gogit.PlainInitWithOptions(path, &gogit.PlainInitOptions{
		Bare:        true,
		InitOptions: gogit.InitOptions{DefaultBranch: Branch},
	})
	if err != nil && !errors.Is(err, gogit.ErrRepositoryAlreadyExists) {
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return Open(path)
}

// Open opens the bare repository at path. It fails with opm.ErrNotFound if
// path is not a git repository.
func Open(path string) (*Repo, error) {
	for _, name := range []string{"HEAD", "objects", "refs"} {
		if _, err := os.Stat(filepath.Join(path, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, opm.Errorf(opm.ErrNotFound, "open %s: not a git repository", path)
			}
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	st := openStorage(path, cache.NewObjectLRU(objectCacheSize))
	return &Repo{path: path, st: st, trees: newTreeCache(treeCacheEntries), writer: make(chan struct{}, 1)}, nil
}

// Path returns the repository's directory.
func (r *Repo) Path() string { return r.path }

// Close releases the repository's resources.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.Close()
}

// Head returns the commit refs/heads/main points at, or plumbing.ZeroHash if
// main has no commits yet.
func (r *Repo) Head() (plumbing.Hash, error) {
	return readRef(r.path, Branch)
}

// ResolveCommit resolves a full commit hash or a unique prefix of at least 7
// hex digits. It fails with opm.ErrNotFound if no commit matches and with
// opm.ErrInvalid if the input is not such a prefix or is ambiguous.
//
// A prefix lookup lists every loose object (go-git has no per-directory
// lookup), so it costs O(objects); it is meant for people typing hashes.
func (r *Repo) ResolveCommit(prefix string) (plumbing.Hash, error) {
	if len(prefix) < 7 || len(prefix) > 40 || !isHex(prefix) {
		return plumbing.ZeroHash, opm.Errorf(opm.ErrInvalid, "commit %q: want 7 to 40 lower-case hex digits", prefix)
	}
	if len(prefix) == 40 {
		h := plumbing.NewHash(prefix)
		r.mu.Lock()
		_, err := r.commit(h)
		r.mu.Unlock()
		return h, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Reindex() // see packs written by the git CLI since we opened
	// HashesWithPrefix takes whole bytes: look up the even-length part, then filter.
	b, _ := hex.DecodeString(prefix[:len(prefix)&^1])
	hashes, err := r.st.HashesWithPrefix(b)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit %s: %w", prefix, err)
	}
	var found []plumbing.Hash
	for _, h := range hashes {
		if h.String()[:len(prefix)] != prefix {
			continue
		}
		if _, err := r.commit(h); err == nil {
			found = append(found, h)
		}
	}
	switch len(found) {
	case 0:
		return plumbing.ZeroHash, opm.Errorf(opm.ErrNotFound, "no commit %s", prefix)
	case 1:
		return found[0], nil
	default:
		return plumbing.ZeroHash, opm.Errorf(opm.ErrInvalid, "commit %s: ambiguous, matches %d commits; give more of its digits (opm log shows them)", prefix, len(found))
	}
}

// object reads an object, translating go-git's not-found error. If the object
// is missing it re-reads the pack indexes once, in case the git CLI packed
// loose objects since the storage loaded them. The caller holds r.mu.
func (r *Repo) object(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	o, err := r.st.EncodedObject(t, h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		r.st.Reindex()
		o, err = r.st.EncodedObject(t, h)
	}
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, opm.Errorf(opm.ErrNotFound, "%s %s not found", t, h)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", t, h, err)
	}
	return o, nil
}

// commit reads a commit object. The caller holds r.mu.
func (r *Repo) commit(h plumbing.Hash) (*object.Commit, error) {
	o, err := r.object(plumbing.CommitObject, h)
	if err != nil {
		return nil, err
	}
	c, err := object.DecodeCommit(r.st, o)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

// tree reads the entries of a tree object; the zero hash is the empty tree.
// The entries are shared with the cache: do not modify them. The caller holds
// r.mu.
func (r *Repo) tree(h plumbing.Hash) ([]object.TreeEntry, error) {
	if h.IsZero() {
		return nil, nil
	}
	if entries, ok := r.trees.get(h); ok {
		return entries, nil
	}
	o, err := r.object(plumbing.TreeObject, h)
	if err != nil {
		return nil, err
	}
	var t object.Tree
	if err := t.Decode(o); err != nil {
		return nil, fmt.Errorf("tree %s: %w", h, err)
	}
	r.trees.put(h, t.Entries)
	return t.Entries, nil
}

// blob reads the content of a blob object of at most max bytes. The
// caller holds r.mu.
func (r *Repo) blob(h plumbing.Hash, max int64) ([]byte, error) {
	o, err := r.object(plumbing.BlobObject, h)
	if err != nil {
		return nil, err
	}
	// Every metadata file is a manifest or smaller; the size is the
	// object's own claim (a hostile remote's compressed bomb).
	if o.Size() > max {
		return nil, opm.Errorf(opm.ErrInvalid, "blob %s: %d bytes, over the %d-byte limit of a metadata file", h, o.Size(), max)
	}
	rd, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	defer rd.Close()
	data := make([]byte, o.Size())
	if _, err := io.ReadFull(rd, data); err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	return data, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
