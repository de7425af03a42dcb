package cas

// Partial blobs (docs/design.md §2, "Reading a big file"): a big blob that
// is not local is read piece by piece. Each chunk its chunk list names is
// fetched with a ranged GET, hashed while it is written at its offset into
// a sparse file, <home>/blobs/partial/<hex>, and counts as present only once
// its hash matches the list: bytes of a chunk not (yet) verified are never
// served. The chunks present are recorded in the index, and only after the
// file's data is on disk, so that a restart keeps them and a crash at any
// point loses at most chunks fetched since the last record. Once every
// chunk is present the file is hashed whole, checked against the blob's
// digest and renamed into sha256/: a blob like any other.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
)

// partialDir is the directory of partial blob files in the local store.
const partialDir = "partial"

// saveEvery is how many newly verified chunks make a Partial record its
// bitmap in the index (after syncing its file): a crash refetches at most
// these.
const saveEvery = 16

// Partial is a blob of a Cache being read chunk by chunk (see above). One
// Partial per blob is shared by every reader of it (OpenPartial counts
// them; Close lets one go), so two readers of the same chunk share one
// fetch.
type Partial struct {
	c     *Cache
	d     digest.Digest
	list  *opm.ChunkList
	listD digest.Digest
	f     *os.File // the sparse file, read and written by offset
	ahead int      // chunks fetched ahead of a sequential reader

	mu       sync.Mutex
	have     []byte // chunks verified and written: bit i%8 of byte i/8
	count    int    // bits set in have
	inflight map[int]*download
	refs     int
	next     int64 // where the last read ended: a read from there is sequential
	whole    bool  // every chunk present: being or been promoted
	promoted bool  // the file is a blob of the store: no record is kept
	closed   bool  // the file is closed, the Partial out of the cache's map
	bad      error // the whole file failed the blob's digest: nothing more is served

	saveMu sync.Mutex // one save at a time
	saved  int        // count when the index last recorded the bitmap (under mu)

	fetches atomic.Int64 // ranged GETs sent (tries included)
}

// OpenPartial returns the Partial of blob d, checked against list (whose
// digest is listD: the manifest names it), opening it if no reader has:
// its file is made (or found, with the chunks the index records as
// present, when they were checked against the same list). readAhead is
// how many chunks a sequential reader has fetched ahead of it (0: none).
// Close lets it go.
func (c *Cache) OpenPartial(d, listD digest.Digest, list *opm.ChunkList, readAhead int) (*Partial, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.partials[d]; p != nil {
		if p.listD != listD {
			return nil, opm.Errorf(opm.ErrConflict, "blob %s is being read with chunk list %s, not %s", d, p.listD, listD)
		}
		p.mu.Lock()
		p.refs++
		p.mu.Unlock()
		return p, nil
	}
	dir := filepath.Join(c.local.dir, partialDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, d.Encoded()), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	n := len(list.Chunks)
	p := &Partial{c: c, d: d, list: list, listD: listD, f: f, ahead: readAhead,
		have: make([]byte, (n+7)/8), inflight: map[int]*download{}, refs: 1}
	fi, err := f.Stat()
	if err == nil && fi.Size() == list.Size {
		p.restore()
	}
	if err == nil && p.count == 0 {
		// A new file, or one whose chunks cannot be told: start empty (a
		// sparse file of the blob's size), its record gone first, so that
		// no record ever names a chunk of the emptied file.
		if idx := c.local.index(); idx != nil {
			err = idx.deletePartial(d)
		}
		if err == nil {
			err = f.Truncate(0)
		}
		if err == nil {
			err = f.Truncate(list.Size)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob store: partial %s: %w", d, err)
	}
	if c.partials == nil {
		c.partials = map[digest.Digest]*Partial{}
	}
	c.partials[d] = p
	if p.count == n { // whole before a crash, not yet promoted
		p.whole = true
		p.refs++
		go p.promote()
	}
	return p, nil
}

// restore takes the chunks the index records as present, when they were
// checked against the same list.
func (p *Partial) restore() {
	idx := p.c.local.index()
	if idx == nil {
		return
	}
	rec, found, err := idx.getPartial(p.d)
	if err != nil {
		slog.Warn("blob index: partial blob record unreadable", "digest", p.d, "err", err)
	}
	if !found || rec.list != p.listD || len(rec.have) != len(p.have) {
		return
	}
	copy(p.have, rec.have)
	if extra := len(p.have)*8 - len(p.list.Chunks); extra > 0 {
		p.have[len(p.have)-1] &= 0xff >> extra // no bits past the last chunk
	}
	for _, b := range p.have {
		p.count += bits.OnesCount8(b)
	}
	p.saved = p.count
}

// File is the partial blob's file: the bytes of a range are the blob's once
// Ensure has returned nil for it. Its descriptor stays valid until the last
// Close, even once the file is promoted.
func (p *Partial) File() *os.File { return p.f }

// Size is the blob's size.
func (p *Partial) Size() int64 { return p.list.Size }

// Fetches counts the ranged GETs this Partial has sent.
func (p *Partial) Fetches() int64 { return p.fetches.Load() }

// Whole reports whether every chunk is present.
func (p *Partial) Whole() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.whole
}

func (p *Partial) present(i int) bool { return p.have[i/8]&(1<<(i%8)) != 0 }

// Ensure makes the chunks that cover n bytes from off present, fetching
// those that are not (in parallel, each once however many readers ask).
// A read that starts where the last one ended is sequential: the chunks
// after it are fetched ahead in the background. An error means the range
// cannot be read now: a chunk's bytes did not match the list after the
// retries (opm.ErrIntegrity), or the bucket failed.
func (p *Partial) Ensure(ctx context.Context, off, n int64) error {
	size := p.list.Size
	if n <= 0 || off >= size {
		return nil
	}
	end := min(off+n, size)
	first, last := int(off/p.list.ChunkSize), int((end-1)/p.list.ChunkSize)
	p.mu.Lock()
	if p.bad != nil {
		p.mu.Unlock()
		return p.bad
	}
	sequential := off > 0 && off == p.next
	p.next = end
	p.mu.Unlock()
	if sequential {
		p.readAhead(last + 1)
	}
	if first == last {
		return p.chunk(ctx, first)
	}
	errs := make(chan error, last-first+1)
	for i := first; i <= last; i++ {
		go func() { errs <- p.chunk(ctx, i) }()
	}
	var err error
	for range last - first + 1 {
		if e := <-errs; err == nil {
			err = e
		}
	}
	return err
}

// readAhead fetches, in the background, the chunks from `from` on that a
// sequential reader will want next: up to p.ahead of them absent and not
// being fetched.
func (p *Partial) readAhead(from int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; i < len(p.list.Chunks) && i < from+p.ahead; i++ {
		if p.present(i) || p.inflight[i] != nil {
			continue
		}
		c := p.c
		c.bgMu.Lock()
		if !c.bgStopped {
			p.refs++ // the file stays open until the fetch is done
			c.bgWG.Go(func() {
				defer p.Close()
				if err := p.chunk(c.bg, i); err != nil && c.bg.Err() == nil {
					slog.Warn("blob cache: read-ahead of a chunk failed", "digest", p.d, "chunk", i, "err", err)
				}
			})
		}
		c.bgMu.Unlock()
	}
}

// chunk makes chunk i present: fetched, or waited for when another reader
// is fetching it.
func (p *Partial) chunk(ctx context.Context, i int) error {
	for {
		p.mu.Lock()
		if p.bad != nil {
			p.mu.Unlock()
			return p.bad
		}
		if p.present(i) {
			p.mu.Unlock()
			return nil
		}
		dl, busy := p.inflight[i]
		if !busy {
			dl = &download{done: make(chan struct{})}
			p.inflight[i] = dl
		}
		p.mu.Unlock()
		if busy {
			select {
			case <-dl.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if dl.err != nil && !errors.Is(dl.err, context.Canceled) && !errors.Is(dl.err, context.DeadlineExceeded) {
				return dl.err
			}
			continue // present now, or given up by its fetcher: look again
		}
		dl.err = p.fetch(ctx, i)
		p.mu.Lock()
		delete(p.inflight, i)
		var save, whole bool
		if dl.err == nil {
			p.have[i/8] |= 1 << (i % 8)
			p.count++
			whole = p.count == len(p.list.Chunks)
			p.whole = whole
			save = !whole && p.count-p.saved >= saveEvery
			if whole {
				p.refs++ // the promotion's
			}
		}
		p.mu.Unlock()
		close(dl.done)
		switch {
		case whole:
			go p.promote()
		case save:
			p.save()
		}
		return dl.err
	}
}

// chunkBufs are the buffers chunks are copied through.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// fetch gets chunk i with a ranged GET, writing it into the file as it
// hashes it, trying again as the cache's Retry allows when the bucket
// fails or the bytes do not match the list. The bytes written count for
// nothing until the caller marks the chunk present.
func (p *Partial) fetch(ctx context.Context, i int) error {
	off, n := p.list.Chunk(i)
	want := p.list.Chunks[i]
	buf := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(buf)
	tries, err := p.c.Retry.do(ctx, p.d, "fetch chunk", retryableFetch, func() error {
		p.fetches.Add(1)
		rc, err := p.c.openRangeRemote(ctx, p.d, off, n)
		if err != nil {
			return &remoteError{err}
		}
		defer rc.Close()
		h := sha256.New()
		rr := &remoteReader{r: rc}
		got, err := io.CopyBuffer(io.MultiWriter(h, io.NewOffsetWriter(p.f, off)), rr, *buf)
		switch {
		case rr.err != nil:
			return &remoteError{fmt.Errorf("blob %s chunk %d: read: %w", p.d, i, rr.err)}
		case err != nil:
			return fmt.Errorf("blob store: partial %s: %w", p.d, err)
		}
		if d := digest.NewDigest(digest.SHA256, h); got != n || d != want {
			return opm.Errorf(opm.ErrIntegrity, "blob %s chunk %d (%d bytes at %d): got %d bytes hashing to %s, the chunk list says %s", p.d, i, n, off, got, d, want)
		}
		return nil
	})
	if err != nil && tries > 1 {
		err = fmt.Errorf("fetch from bucket failed after %d attempts: %w", tries, err)
	}
	return err
}

// openRangeRemote opens a range at the remote with one try when the remote
// retries by itself (a Bucket): fetch retries the whole chunk instead.
func (c *Cache) openRangeRemote(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	if b, ok := c.remote.(interface {
		openRangeOnce(context.Context, digest.Digest, int64, int64) (io.ReadCloser, error)
	}); ok {
		return b.openRangeOnce(ctx, d, off, n)
	}
	return c.remote.OpenRange(ctx, d, off, n)
}

// save records in the index the chunks present, once the file's data is
// on disk: a record never names a chunk a crash could lose.
func (p *Partial) save() {
	idx := p.c.local.index()
	if idx == nil {
		return
	}
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	p.mu.Lock()
	rec := partialRecord{list: p.listD, have: append([]byte(nil), p.have...)}
	count, promoted, saved := p.count, p.promoted, p.saved
	p.mu.Unlock()
	if count <= saved || promoted {
		return
	}
	if err := unix.Fdatasync(int(p.f.Fd())); err != nil {
		slog.Warn("blob store: sync of a partial blob failed", "digest", p.d, "err", err)
		return
	}
	if err := idx.putPartial(p.d, rec); err != nil {
		slog.Warn("blob index: partial blob record failed", "digest", p.d, "err", err)
		return
	}
	p.mu.Lock()
	p.saved = count
	p.mu.Unlock()
}

// promote makes the whole file a blob of the store: hashed whole, checked
// against the blob's digest, renamed into sha256/. A file that fails is
// removed, and the Partial serves nothing more: its chunks matched a list
// that does not describe the blob. It holds a reference, let go at the end.
func (p *Partial) promote() {
	defer p.Close()
	l := p.c.local
	path := filepath.Join(l.dir, partialDir, p.d.Encoded())
	drop := func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			slog.Warn("blob store: cannot remove a partial blob", "digest", p.d, "err", err)
		}
		if idx := l.index(); idx != nil {
			if err := idx.deletePartial(p.d); err != nil {
				slog.Warn("blob index: partial blob record not removed", "digest", p.d, "err", err)
			}
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(p.f, 0, p.list.Size))
	if err == nil {
		if got := digest.NewDigest(digest.SHA256, h); got != p.d || n != p.list.Size {
			err = integrityError(p.d, p.list.Size, got, n)
			slog.Error("blob cache: the chunks of a blob match its chunk list, but the blob does not match its digest: the chunk list is wrong", "digest", p.d, "list", p.listD, "err", err)
			p.mu.Lock()
			p.bad = err
			p.mu.Unlock()
			drop()
			return
		}
	}
	if err == nil && l.reuse(p.d) { // fetched whole meanwhile
		p.mu.Lock()
		p.promoted = true
		p.mu.Unlock()
		drop()
		return
	}
	if err == nil {
		err = settle(p.f, l.Path(p.d))
	}
	if err != nil {
		// Its chunks are kept (recorded), and the next open of the blob
		// tries again.
		slog.Warn("blob store: a partial blob could not become whole; it stays partial", "digest", p.d, "err", err)
		p.save()
		return
	}
	p.mu.Lock()
	p.promoted = true
	p.mu.Unlock()
	l.installed(p.d, p.list.Size)
	if idx := l.index(); idx != nil {
		if err := idx.deletePartial(p.d); err != nil {
			slog.Warn("blob index: partial blob record not removed", "digest", p.d, "err", err)
		}
	}
}

// StopPartials stops the read-ahead of every partial blob, waits for it,
// and records in the index the chunks of those still open: for a clean
// stop (a daemon exiting), so that a restart keeps every chunk fetched.
// Reads of partial blobs still work afterwards, without read-ahead.
func (c *Cache) StopPartials() {
	c.bgMu.Lock()
	c.bgStopped = true
	c.bgMu.Unlock()
	c.stopBg()
	c.bgWG.Wait()
	c.mu.Lock()
	open := make([]*Partial, 0, len(c.partials))
	for _, p := range c.partials {
		open = append(open, p)
	}
	c.mu.Unlock()
	for _, p := range open {
		p.save()
	}
}

// Close lets the Partial go; the last Close records its chunks and closes
// its file.
//
// The Partial stays the blob's while its chunks are recorded, so that a
// reader opening the blob meanwhile takes it up again (and it is not
// closed) rather than opening the file anew from a record not yet written.
func (p *Partial) Close() error {
	p.mu.Lock()
	p.refs--
	last := p.refs == 0
	p.mu.Unlock()
	if !last {
		return nil
	}
	p.save()
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	p.mu.Lock()
	done := p.refs > 0 || p.closed // taken up again, or closed by another last Close
	p.closed = p.closed || !done
	p.mu.Unlock()
	if done {
		return nil
	}
	delete(c.partials, p.d)
	return p.f.Close()
}
