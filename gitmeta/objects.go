package gitmeta

import (
	"compress/zlib"
	"container/list"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// writeLoose writes the object h (of type t and content data) as a loose
// object file in git's format and returns the fan-out directory it is in. The
// content goes to a temporary file in that directory, which is fsynced, made
// read-only and renamed into place, so that once the directory is synced the
// object is durable. An object file that is already there is kept.
//
// go-git's own writer (ObjectStorage.SetEncodedObject) is not used for two
// reasons: it never fsyncs, so after a power loss a published ref could name
// an empty object file; and it compresses at zlib's default level, which for
// a 10k-entry tags tree costs ~40ms, whereas git itself writes loose objects
// at level 1 (core.looseCompression), as this does, in a few milliseconds.
func writeLoose(gitDir string, h plumbing.Hash, t plumbing.ObjectType, data []byte) (dir string, err error) {
	hex := h.String()
	dir = filepath.Join(gitDir, "objects", hex[:2])
	path := filepath.Join(dir, hex[2:])
	if _, err := os.Stat(path); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return dir, fmt.Errorf("write %s %s: %w", t, hex, err)
	}
	f, err := os.CreateTemp(dir, "tmp_obj_")
	if err != nil {
		return dir, fmt.Errorf("write %s %s: %w", t, hex, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("write %s %s: %w", t, hex, err)
		}
	}()
	zw := zlibWriters.Get().(*zlib.Writer)
	defer zlibWriters.Put(zw)
	zw.Reset(f)
	header := strconv.AppendInt(append([]byte(t.String()), ' '), int64(len(data)), 10)
	if _, err := zw.Write(append(header, 0)); err != nil {
		return dir, err
	}
	if _, err := zw.Write(data); err != nil {
		return dir, err
	}
	if err := zw.Close(); err != nil {
		return dir, err
	}
	if err := f.Chmod(0o444); err != nil {
		return dir, err
	}
	if err := f.Sync(); err != nil {
		return dir, err
	}
	if err := f.Close(); err != nil {
		return dir, err
	}
	return dir, os.Rename(f.Name(), path)
}

// zlibWriters recycles compressors: each holds ~1 MB of state.
var zlibWriters = sync.Pool{New: func() any {
	zw, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed) // a valid level: no error
	return zw
}}

// encodeTree returns the content of a tree object of entries, which must be
// sorted in git order. It is object.Tree.Encode without a fmt call per entry.
func encodeTree(entries []object.TreeEntry) []byte {
	n := 0
	for _, e := range entries {
		n += len(e.Name) + 28
	}
	buf := make([]byte, 0, n)
	for _, e := range entries {
		buf = strconv.AppendUint(buf, uint64(e.Mode), 8)
		buf = append(buf, ' ')
		buf = append(buf, e.Name...)
		buf = append(buf, 0)
		buf = append(buf, e.Hash[:]...)
	}
	return buf
}

// treeCache keeps decoded trees, least recently used evicted first, up to a
// total number of entries. Trees are immutable: the cached entry slices are
// shared and must not be modified. It is guarded by Repo.mu.
type treeCache struct {
	max, size int
	lru       list.List // of *cachedTree, most recently used at the front
	byHash    map[plumbing.Hash]*list.Element
}

type cachedTree struct {
	hash    plumbing.Hash
	entries []object.TreeEntry
}

func newTreeCache(maxEntries int) *treeCache {
	return &treeCache{max: maxEntries, byHash: make(map[plumbing.Hash]*list.Element)}
}

func (c *treeCache) get(h plumbing.Hash) ([]object.TreeEntry, bool) {
	el, ok := c.byHash[h]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cachedTree).entries, true
}

func (c *treeCache) put(h plumbing.Hash, entries []object.TreeEntry) {
	if _, ok := c.byHash[h]; ok || len(entries) > c.max {
		return
	}
	c.byHash[h] = c.lru.PushFront(&cachedTree{h, entries})
	c.size += len(entries)
	for c.size > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedTree)
		delete(c.byHash, old.hash)
		c.size -= len(old.entries)
	}
}
