package registry

import (
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/openpm/opm"
)

// The caches behind views: they keep what the metadata never changes
// under a name (a git blob hash is the same bytes in every view).

// headCache keeps the View of the head while the head stays: a reader asks
// for the head at every request and pays one read of refs/heads/main.
type headCache struct {
	mu sync.Mutex
	v  *View
}

// digestCache maps a metadata file's git blob hash to the sha256 digest of
// its bytes: content under a hash never changes, so a digest lookup needs
// no file read after the first.
type digestCache struct {
	mu sync.Mutex
	m  map[Hash]digest.Digest
}

func (c *digestCache) get(h Hash) (digest.Digest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[h]
	return d, ok
}

func (c *digestCache) put(h Hash, d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 1<<16 {
		clear(c.m)
	}
	c.m[h] = d
}

// manifestCache keeps manifest files read and parsed, by their git blob
// hash: the same hash is the same bytes in every view, so a tag a head move
// did not change is not read again. Entries are shared and read-only.
type manifestCache struct {
	mu    sync.Mutex
	m     map[Hash]*parsedManifest
	bytes int
}

type parsedManifest struct {
	body   []byte
	digest digest.Digest
	m      *opm.AnyManifest
	err    error
}

// summaryCache keeps what a listing shows of a manifest file (its
// TagSummary but for the tag's name and time), by its git blob hash: past
// the manifest cache — one manifest of a few MiB is never kept there — a
// repository's page still reads and parses no manifest it has summarized
// before, so what a page costs does not grow with the size of its
// manifests. An entry is a hundred bytes or so, whatever the manifest's
// size: the cache is bounded by count.
type summaryCache struct {
	mu sync.Mutex
	m  map[Hash]TagSummary
}

// summaryCacheMax bounds the summaries kept.
const summaryCacheMax = 1 << 16

func (c *summaryCache) get(h Hash) (TagSummary, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts, ok := c.m[h]
	return ts, ok
}

func (c *summaryCache) put(h Hash, ts TagSummary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= summaryCacheMax {
		c.m = map[Hash]TagSummary{}
	}
	c.m[h] = ts
}

// manifestCacheMax bounds the bytes of manifests kept (what they cost
// parsed is counted as twice their size).
const manifestCacheMax = 32 << 20

func (c *manifestCache) get(h Hash) *parsedManifest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[h]
}

func (c *manifestCache) put(h Hash, pm *parsedManifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cost := 3 * len(pm.body)
	if cost > manifestCacheMax/4 {
		return
	}
	if c.m == nil || c.bytes+cost > manifestCacheMax {
		c.m, c.bytes = map[Hash]*parsedManifest{}, 0
	}
	c.m[h] = pm
	c.bytes += cost
}
