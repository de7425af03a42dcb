package opmfs

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// fdCacheSize bounds the blob files kept open for reads without an open
// (Options.NoOpen).
const fdCacheSize = 512

// fdCache keeps blob files of the local store open, one per digest, for
// reads that come without a file handle. A file in use is closed only once
// its last reader lets it go.
type fdCache struct {
	mu sync.Mutex
	m  map[digest.Digest]*cachedFD
}

type cachedFD struct {
	blob    *registry.Blob // held in use while cached
	refs    int
	evicted bool
}

func (e *cachedFD) close() { e.blob.Close() }

// acquire returns the open blob file of f, opening it (and fetching the
// blob) if needed. The caller releases it.
func (c *fdCache) acquire(ctx context.Context, fsys *FS, f *opm.File, file string) (*cachedFD, error) {
	d := f.Digest
	c.mu.Lock()
	if e := c.m[d]; e != nil {
		e.refs++
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()
	b, err := fsys.openBlob(ctx, f, file)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[d]; e != nil { // opened meanwhile by another reader
		b.Close()
		e.refs++
		return e, nil
	}
	if c.m == nil {
		c.m = make(map[digest.Digest]*cachedFD)
	}
	if len(c.m) >= fdCacheSize {
		// Let half go, whichever map order gives: the page cache, not
		// this, is what makes reads fast.
		for k, e := range c.m {
			if len(c.m) < fdCacheSize/2 {
				break
			}
			delete(c.m, k)
			e.evicted = true
			if e.refs == 0 {
				e.close()
			}
		}
	}
	e := &cachedFD{blob: b, refs: 1}
	c.m[d] = e
	return e, nil
}

func (c *fdCache) release(e *cachedFD) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.evicted {
		e.close()
	}
}

// close closes every cached file (the mount is gone).
func (c *fdCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		delete(c.m, k)
		e.evicted = true
		if e.refs == 0 {
			e.close()
		}
	}
}
