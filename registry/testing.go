package registry

import "github.com/opencontainers/go-digest"

// For tests of other packages: the registry's own state, seen from outside.

// LocalPath is the file of the local store that holds (or would hold) d.
func (r *Registry) LocalPath(d digest.Digest) string { return r.local.Path(d) }

// HasLocal reports whether the local store holds d.
func (r *Registry) HasLocal(d digest.Digest) bool { return r.local.Has(d) }

// BlobInUse reports whether d is being read (open in the mount, copied by a
// command): eviction spares it.
func (r *Registry) BlobInUse(d digest.Digest) bool { return r.inuse.held(d) }

// SetEvictHook makes fn run inside the removal of every blob eviction
// removes, while that blob is marked as being evicted (nil: nothing runs).
// Tests make it slow to show what waits for an eviction and what does not.
func (r *Registry) SetEvictHook(fn func(digest.Digest)) {
	if fn == nil {
		r.evictHook.Store(nil)
		return
	}
	r.evictHook.Store(&fn)
}
