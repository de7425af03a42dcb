package fs

import (
	"sync"

	"github.com/opencontainers/go-digest"
)

// inUse counts, per blob, the files of the local store the mount holds
// open: handles of opened files, files of the fdCache, and opens in
// progress (from before the fetch, so that a blob just fetched is not
// evicted before it is opened). Eviction spares them (registry.BlobHolder):
// removing an open file would free no space, and the next open would fetch
// it again.
type inUse struct {
	mu sync.Mutex
	m  map[digest.Digest]int
}

func (u *inUse) add(d digest.Digest) {
	u.mu.Lock()
	if u.m == nil {
		u.m = make(map[digest.Digest]int)
	}
	u.m[d]++
	u.mu.Unlock()
}

func (u *inUse) done(d digest.Digest) {
	u.mu.Lock()
	if n := u.m[d]; n > 1 {
		u.m[d] = n - 1
	} else {
		delete(u.m, d)
	}
	u.mu.Unlock()
}

// InUse reports whether the mount holds the blob d open.
func (fsys *FS) InUse(d digest.Digest) bool {
	fsys.inuse.mu.Lock()
	defer fsys.inuse.mu.Unlock()
	return fsys.inuse.m[d] > 0
}

// UnlessInUse runs fn unless the mount holds d open; no open of d starts
// while fn runs. It reports whether fn ran.
func (fsys *FS) UnlessInUse(d digest.Digest, fn func()) bool {
	fsys.inuse.mu.Lock()
	defer fsys.inuse.mu.Unlock()
	if fsys.inuse.m[d] > 0 {
		return false
	}
	fn()
	return true
}

// OpenBlobs is the number of blobs the mount holds open.
func (fsys *FS) OpenBlobs() int {
	fsys.inuse.mu.Lock()
	defer fsys.inuse.mu.Unlock()
	return len(fsys.inuse.m)
}
