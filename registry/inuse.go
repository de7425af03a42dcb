package registry

import (
	"sync"

	"github.com/opencontainers/go-digest"
)

// inUse is the one record of the blobs of the local store being read: files
// open in the mount or kept open for it, a blob a command is copying or
// serving, a fetch in progress for an open. Eviction spares them: removing
// a file in use frees no space, and the next read would fetch it again.
//
// Eviction marks the blob it removes for the time of the removal (a file
// system unlink and a Badger write, done without the lock): a hold of that
// one blob waits for it, and nothing else does.
type inUse struct {
	mu       sync.Mutex
	n        map[digest.Digest]int
	evicting map[digest.Digest]chan struct{}
}

// hold keeps d from eviction until release is called (once; later calls do
// nothing). It waits while d is being evicted.
func (u *inUse) hold(d digest.Digest) (release func()) {
	u.mu.Lock()
	for {
		ch, busy := u.evicting[d]
		if !busy {
			break
		}
		u.mu.Unlock()
		<-ch
		u.mu.Lock()
	}
	if u.n == nil {
		u.n = make(map[digest.Digest]int)
	}
	u.n[d]++
	u.mu.Unlock()
	return sync.OnceFunc(func() {
		u.mu.Lock()
		if u.n[d]--; u.n[d] <= 0 {
			delete(u.n, d)
		}
		u.mu.Unlock()
	})
}

// evict runs remove unless d is held, and reports whether it ran. Holds of
// d that start meanwhile wait until remove returns; the lock is not held
// while it runs.
func (u *inUse) evict(d digest.Digest, remove func()) bool {
	u.mu.Lock()
	if u.n[d] > 0 || u.evicting[d] != nil {
		u.mu.Unlock()
		return false
	}
	if u.evicting == nil {
		u.evicting = make(map[digest.Digest]chan struct{})
	}
	ch := make(chan struct{})
	u.evicting[d] = ch
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.evicting, d)
		u.mu.Unlock()
		close(ch)
	}()
	remove()
	return true
}

// held reports whether d is in use.
func (u *inUse) held(d digest.Digest) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n[d] > 0
}

// count is the number of blobs in use.
func (u *inUse) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.n)
}
