// Package registry is opm's registry on one machine, and the only door into
// it: the mount, the HTTP server, the mirror and the CLI read the metadata
// through a View and change the registry through its operations (push, tag,
// rm, put and delete of manifests and blobs, sync, gc). It ties the git
// metadata (gitmeta, in the layout of package layout) to the blob stores
// (cas) and keeps the invariant that a tag is committed only after every
// blob it names is stored (docs/design.md §4).
//
// The home directory is drawn in paths.go.
package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
)

// Hash names a commit or a file of the metadata. Readers compare and keep
// it; they never look inside the repository with it.
type Hash = gitmeta.Hash

// Registry is an open home. It is safe for concurrent use.
type Registry struct {
	dir    string
	meta   *gitmeta.Repo
	local  *cas.Local
	bucket *cas.Bucket // nil when no bucket is configured
	// blobs is where content is read and written: the local store, or
	// cache, the local store in front of the bucket.
	blobs cas.Store
	cache *cas.Cache

	indexMu sync.Mutex
	index   *cas.Index // opened on first use, closed by Close

	fetches   atomic.Int64  // blobs this process asked the bucket for
	inuse     inUse         // blobs being read: eviction spares them (inuse.go)
	touches   toucher       // accesses recorded in the index off the read path (blobs.go)
	lru       lruState      // the local cache's lifecycle (pins.go, evict.go)
	head      headCache     // the View of the head, kept while the head stays (view.go)
	digests   digestCache   // sha256 of metadata files by their git blob hash (view.go)
	manifests manifestCache // manifests read and parsed, by their git blob hash (view.go)
	summaries summaryCache  // what a listing shows of a manifest, by its git blob hash (listing.go)
	counts    countCache    // tag counts by tags tree (listing.go)
	parses    atomic.Int64  // manifest files read and parsed (view.go); tests count them
	trust     trustStates   // the remotes' last verifications (trust.go)
	reads     readWatch     // opens of blob files by other processes (watchreads.go)

	// indexWait is how long to wait for the Badger index when another
	// process holds it.
	indexWait time.Duration
	// now is the clock (tests inject it).
	now func() time.Time
	// evictHook, when set, runs inside each eviction's removal (tests make
	// it slow to show that opens of other blobs do not wait).
	evictHook atomic.Pointer[func(digest.Digest)]
}

// Home is the home directory.
func (r *Registry) Home() string { return r.dir }

// BlobFileTree is the local store's directory of blob files, each at
// cas.FanPath(d) below it, complete and verified. It is for readers that
// cannot go through OpenBlob (the mount's kernel overlay reads it as a data
// layer); it must never be written, and a blob read there is not marked in
// use (eviction may unlink it; an open file keeps its content).
func (r *Registry) BlobFileTree() string { return r.local.FileTree() }

// BlobFilePath is where the file of d is below BlobFileTree:
// "<first two hex digits>/<hex>". d must be a valid sha256 digest.
func BlobFilePath(d digest.Digest) string { return cas.FanPath(d) }

// Paths names the paths of the home.
func (r *Registry) Paths() Paths { return PathsOf(r.dir) }

// Open opens the home at dir, creating it first if needed (idempotent).
func Open(ctx context.Context, dir string) (*Registry, error) {
	if dir == "" {
		return nil, opm.Errorf(opm.ErrInvalid, "empty home directory: give --home DIR or set OPM_HOME")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fsError(fmt.Errorf("create home: %w", err))
	}
	r := &Registry{dir: abs, indexWait: 30 * time.Second, now: time.Now}
	r.digests.m = map[Hash]digest.Digest{}
	if r.meta, err = gitmeta.Init(r.Paths().Meta()); err != nil {
		return nil, fmt.Errorf("metadata repository %s: %w", r.Paths().Meta(), fsError(err))
	}
	if r.local, err = cas.OpenLocal(r.Paths().Blobs(), nil); err != nil {
		r.meta.Close()
		return nil, fsError(err)
	}
	r.blobs = r.local
	url, key, err := r.blobsURL()
	if err != nil {
		r.meta.Close()
		return nil, err
	}
	if url != "" {
		if r.bucket, err = cas.OpenBucket(ctx, url); err != nil {
			r.meta.Close()
			return nil, fmt.Errorf("%w (set by %s; git config -f %s --unset %s drops it)", err, key, filepath.Join(r.Paths().Meta(), "config"), key)
		}
		r.cache = cas.NewCache(r.local, r.bucket)
		r.blobs = r.cache
	}
	return r, nil
}

// Close releases the stores.
func (r *Registry) Close() error {
	r.touches.stop()
	var errs []error
	if r.cache != nil {
		r.cache.StopPartials() // their chunks recorded while the index is open
	}
	if r.bucket != nil {
		errs = append(errs, r.bucket.Close())
	}
	errs = append(errs, r.local.Close())
	r.indexMu.Lock()
	if r.index != nil {
		r.local.UseIndex(nil)
		errs = append(errs, r.index.Close())
		r.index = nil
	}
	r.indexMu.Unlock()
	errs = append(errs, r.meta.Close())
	return errors.Join(errs...)
}

// HasBucket reports whether the registry keeps its blobs in a bucket (else
// the local store is their only copy).
func (r *Registry) HasBucket() bool { return r.bucket != nil }

// Own takes the home's Badger index now rather than on first use (waiting
// up to the index wait, 30 s, while another process holds it, or until ctx
// ends) and keeps it until Close: the daemon owns the home this way for its
// whole life.
func (r *Registry) Own(ctx context.Context) error {
	_, err := r.openIndex(ctx)
	return err
}

// openIndex opens the Badger index on first use (waiting as Own does) and
// keeps it until Close.
func (r *Registry) openIndex(ctx context.Context) (*cas.Index, error) {
	return r.indexWithin(ctx, r.indexWait)
}

// indexWithin is openIndex waiting at most wait for another process.
func (r *Registry) indexWithin(ctx context.Context, wait time.Duration) (*cas.Index, error) {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	if r.index == nil {
		idx, err := cas.OpenIndex(ctx, r.Paths().Index(), wait)
		if err != nil {
			return nil, err
		}
		r.index = idx
		r.local.UseIndex(idx) // opens, pulls and fetches now note their accesses
	}
	return r.index, nil
}

// recordBlobs notes stored blobs in the Badger index. The index is a cache
// of facts about the files, so a failure here loses nothing: it is logged by
// the caller and the index can be rebuilt.
func (r *Registry) recordBlobs(ctx context.Context, blobs []opm.Descriptor) error {
	idx, err := r.openIndex(ctx)
	if err != nil {
		return err
	}
	for _, b := range blobs {
		if err := idx.Record(b.Digest, b.Size); err != nil {
			return err
		}
	}
	return nil
}
