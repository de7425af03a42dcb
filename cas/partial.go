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
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
)

// partialDir is the directory of partial blob files in the local store.
const partialDir = "partial"

// saveEvery is how many bytes of newly verified chunks make a Partial
// record its bitmap in the index (after syncing its file, in the
// background): a crash refetches at most about these.
const saveEvery = 64 << 20

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
	ahead int      // ranged GETs at once: ahead of a sequential reader, or for a read of many chunks

	mu       sync.Mutex
	have     []byte // chunks verified and written: bit i%8 of byte i/8
	count    int    // bits set in have
	inflight map[int]*download
	refs     int
	next     int64         // where the last read ended: a read from there is sequential
	whole    bool          // every chunk present: being or been promoted
	promoted bool          // the file is a blob of the store: no record is kept
	closed   bool          // the file is closed, the Partial out of the cache's map
	saving   bool          // a save in the background is under way
	settled  chan struct{} // closed when a promotion has ended, well or not
	bad      error         // the whole file failed the blob's digest: nothing more is served

	saveMu sync.Mutex // one save at a time; the file is closed under it
	saved  int        // count when the index last recorded the bitmap (under mu)

	fetches atomic.Int64 // ranged GETs sent (tries included)
}

// OpenPartial returns the Partial of blob d, checked against list (whose
// digest is listD: the manifest names it), opening it if no reader has:
// its file is made (or found, with the chunks the index records as
// present, when they were checked against the same list). readAhead is
// how many ranged GETs (each of up to 4 MiB of chunks) are under way at
// once ahead of a sequential reader (0: none), and for a read of many
// chunks. Close lets it go.
func (c *Cache) OpenPartial(d, listD digest.Digest, list *opm.ChunkList, readAhead int) (*Partial, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, err := c.share(d, listD); p != nil || err != nil {
		return p, err
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
		have: make([]byte, (n+7)/8), inflight: map[int]*download{}, refs: 1, settled: make(chan struct{})}
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
		c.background(p.promote)
	}
	return p, nil
}

// SharePartial returns the Partial of blob d when a reader has it open
// (Close lets it go), nil when none has: a reader that finds one needs
// not read the chunk list (OpenPartial). It fails with opm.ErrConflict
// when the blob is being read with another chunk list than listD.
func (c *Cache) SharePartial(d, listD digest.Digest) (*Partial, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.share(d, listD)
}

// share is SharePartial with c.mu held.
func (c *Cache) share(d, listD digest.Digest) (*Partial, error) {
	p := c.partials[d]
	if p == nil {
		return nil, nil
	}
	if p.listD != listD {
		return nil, opm.Errorf(opm.ErrConflict, "blob %s is being read with chunk list %s, not %s", d, p.listD, listD)
	}
	p.mu.Lock()
	p.refs++
	p.mu.Unlock()
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

// Fetches counts the ranged GETs this Partial has sent.
func (p *Partial) Fetches() int64 { return p.fetches.Load() }

func (p *Partial) present(i int) bool { return p.have[i/8]&(1<<(i%8)) != 0 }

// Settle waits, once every chunk is present, for the blob to be a whole
// blob of the store (promoted): nil once it is, the error that kept it
// from being one otherwise. It returns at once while chunks are missing.
func (p *Partial) Settle(ctx context.Context) error {
	p.mu.Lock()
	whole := p.whole
	p.mu.Unlock()
	if !whole {
		return nil
	}
	select {
	case <-p.settled:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bad != nil {
		return p.bad
	}
	if !p.promoted {
		return fmt.Errorf("blob store: partial blob %s could not become whole (see the log)", p.d)
	}
	return nil
}

// Ensure makes the chunks that cover n bytes from off present, fetching
// those that are not (in parallel, at most readAhead at a time, each once
// however many readers ask). A sequential read (see below) has the chunks
// after it fetched ahead in the background. An error means the range
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
	// Sequential: from where the last read ended, or from the start of a
	// chunk just after one present or being fetched (the kernel sends a
	// reader's reads a few at a time, not always in order).
	sequential := off > 0 && off == p.next
	if off > 0 && off%p.list.ChunkSize == 0 && (p.present(first-1) || p.inflight[first-1] != nil) {
		sequential = true
	}
	p.next = end
	p.mu.Unlock()
	if sequential {
		p.readAhead(last + 1)
	}
	if first == last {
		return p.chunk(ctx, first)
	}
	return p.ensureRuns(ctx, first, last)
}

// runBytes is how many bytes of consecutive chunks one ranged GET fetches
// at most, when a reader needs several (read-ahead, a whole blob): small
// chunks for a random read's latency, big GETs for a sequential one's
// throughput (each chunk verified and usable as soon as it has arrived).
const runBytes = 4 << 20

// span is how many chunks one ranged GET of several fetches.
func (p *Partial) span() int { return max(1, int(runBytes/p.list.ChunkSize)) }

// claim marks as being fetched the chunks from i on that are absent and
// not being fetched, consecutive, at most n, and returns their downloads
// (none if chunk i is present or being fetched). Called with p.mu held.
func (p *Partial) claim(i, n int) []*download {
	var dls []*download
	for ; n > 0 && i < len(p.list.Chunks) && !p.present(i) && p.inflight[i] == nil; i, n = i+1, n-1 {
		dl := &download{done: make(chan struct{})}
		p.inflight[i] = dl
		dls = append(dls, dl)
	}
	return dls
}

// readAhead fetches, in the background, the chunks a sequential reader
// will want next: those absent and not being fetched among the p.ahead
// spans of chunks from `from` on (the window moves with the reader), in
// GETs of a whole span (or to the end of the blob). So at most p.ahead
// GETs are in flight ahead of a reader however often it reads, and each is
// big.
func (p *Partial) readAhead(from int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.c
	n, span := len(p.list.Chunks), p.span()
	end := min(n, from+p.ahead*span)
	for i := from; i < end; {
		if p.present(i) || p.inflight[i] != nil {
			i++
			continue
		}
		if end-i < span && end < n {
			break // the window's tail: a whole span once the reader has moved on
		}
		dls := p.claim(i, span)
		p.refs++ // the file stays open until the fetch is done
		first := i
		c.background(func() {
			defer p.Close()
			if err := p.fetchRun(c.bg, first, dls); err != nil && c.bg.Err() == nil {
				slog.Warn("blob cache: read-ahead of chunks failed", "digest", p.d, "chunk", first, "err", err)
			}
		})
		i += len(dls)
	}
}

// ensureRuns makes chunks first to last present, fetching those absent
// and not being fetched in GETs of a span of chunks, p.ahead GETs at a
// time, and waiting for the others. The first failure stops the rest.
func (p *Partial) ensureRuns(ctx context.Context, first, last int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(p.ahead, 1))
	for i := first; i <= last && gctx.Err() == nil; {
		p.mu.Lock()
		dls := p.claim(i, min(p.span(), last-i+1))
		p.mu.Unlock()
		if len(dls) == 0 {
			i++ // present, or being fetched: waited for below
			continue
		}
		from := i
		g.Go(func() error { return p.fetchRun(gctx, from, dls) })
		i += len(dls)
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i := first; i <= last; i++ {
		if err := p.chunk(ctx, i); err != nil {
			return err
		}
	}
	return nil
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
			dl = p.claim(i, 1)[0]
		}
		p.mu.Unlock()
		if !busy {
			return p.fetchRun(ctx, i, []*download{dl})
		}
		if err := dl.wait(ctx); err != nil {
			return err
		}
		// present now, or given up by its fetcher: look again
	}
}

// done ends the download dl of chunk i, marking the chunk present when err
// is nil, and starts what that calls for: the promotion of a blob now
// whole, or a save of the chunks present.
func (p *Partial) done(i int, dl *download, err error) {
	dl.err = err
	p.mu.Lock()
	delete(p.inflight, i)
	var save, whole bool
	if err == nil {
		_, n := p.list.Chunk(i)
		p.c.local.added.Add(n) // the store grew: its quota is looked at
		p.have[i/8] |= 1 << (i % 8)
		p.count++
		whole = p.count == len(p.list.Chunks)
		p.whole = whole
		save = !whole && int64(p.count-p.saved)*p.list.ChunkSize >= saveEvery && !p.saving
		p.saving = p.saving || save
		if save {
			p.refs++ // the file stays open until it is saved
		}
		if whole {
			p.refs++ // the promotion's
		}
	}
	p.mu.Unlock()
	close(dl.done)
	switch {
	case whole:
		p.c.background(p.promote)
	case save:
		p.c.background(func() {
			defer p.Close()
			p.save()
			p.mu.Lock()
			p.saving = false
			p.mu.Unlock()
		})
	}
}

// chunkBufs are the buffers chunks are copied through.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// fetchRun gets the chunks from first on whose downloads are dls (claimed
// by the caller) with one ranged GET, writing each into the file as it
// hashes it and marking it present as soon as it matches the list, trying
// again from the first chunk not yet present, as the cache's Retry allows,
// when the bucket fails or bytes do not match. It ends every download, and
// returns the error that ended the first chunk not fetched.
func (p *Partial) fetchRun(ctx context.Context, first int, dls []*download) (err error) {
	next, end := first, first+len(dls)
	defer func() {
		for ; next < end; next++ {
			p.done(next, dls[next-first], err)
		}
	}()
	buf := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(buf)
	tries, err := p.c.Retry.do(ctx, p.d, "fetch chunk", retryableFetch, func() error {
		p.fetches.Add(1)
		off, _ := p.list.Chunk(next)
		lastOff, lastN := p.list.Chunk(end - 1)
		rc, err := p.c.openRangeRemote(ctx, p.d, off, lastOff+lastN-off)
		if err != nil {
			return &remoteError{err}
		}
		defer rc.Close()
		rr := &remoteReader{r: counted(ctx, rc)}
		for next < end {
			off, n := p.list.Chunk(next)
			h := sha256.New()
			got, err := io.CopyBuffer(io.MultiWriter(h, io.NewOffsetWriter(p.f, off)), io.LimitReader(rr, n), *buf)
			switch {
			case rr.err != nil:
				return &remoteError{fmt.Errorf("blob %s chunk %d: read: %w", p.d, next, rr.err)}
			case err != nil:
				return fmt.Errorf("blob store: partial %s: %w", p.d, err)
			}
			if d := digest.NewDigest(digest.SHA256, h); got != n || d != p.list.Chunks[next] {
				return opm.Errorf(opm.ErrIntegrity, "blob %s chunk %d (%d bytes at %d): got %d bytes hashing to %s, the chunk list says %s", p.d, next, n, off, got, d, p.list.Chunks[next])
			}
			p.done(next, dls[next-first], nil)
			next++
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
	count, promoted, saved, closed := p.count, p.promoted, p.saved, p.closed
	p.mu.Unlock()
	if count <= saved || promoted || closed {
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
	defer close(p.settled)
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

// background runs fn in a goroutine StopPartials waits for (a promotion, a
// read-ahead); once StopPartials has run, in one nothing waits for (a
// read-ahead then returns at once: its context is done).
func (c *Cache) background(fn func()) {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgStopped {
		go fn() // after the stop: nothing waits for it, nor needs to
		return
	}
	c.bgWG.Go(fn)
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
	// Closed under saveMu: a save of another last Close, taken up again
	// meanwhile, is over or sees it closed.
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	// Its time is its last use, for eviction's LRU order (reads of chunks
	// present write nothing).
	now := unix.NsecToTimeval(time.Now().UnixNano())
	unix.Futimes(int(p.f.Fd()), []unix.Timeval{now, now})
	return p.f.Close()
}

// PartialFile is a partial blob file of the local store, as Partials
// lists it.
type PartialFile struct {
	Digest digest.Digest
	Path   string
	Size   int64 // the blob's size (the file's length)
	// Bytes is the disk space the file takes (it is sparse: the chunks
	// present, not the blob's size).
	Bytes   int64
	ModTime time.Time // its last chunk written, or last closed
	// List is the digest of the chunk list its chunks were checked
	// against, and Chunks how many the index records as present; "" and 0
	// when the index has no record (or is not open).
	List   digest.Digest
	Chunks int
}

// Partials lists the partial blob files of the store.
func (l *Local) Partials() ([]PartialFile, error) {
	dir := filepath.Join(l.dir, partialDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list partial blobs: %w", err)
	}
	idx := l.index()
	var out []PartialFile
	for _, e := range entries {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if !e.Type().IsRegular() || validate(d) != nil {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list partial blobs: %w", err)
		}
		p := PartialFile{Digest: d, Path: filepath.Join(dir, e.Name()), Size: fi.Size(), Bytes: fi.Size(), ModTime: fi.ModTime()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			p.Bytes = st.Blocks * 512
		}
		if idx != nil {
			rec, found, err := idx.getPartial(d)
			if err != nil {
				return nil, err
			}
			if found {
				p.List = rec.list
				for _, b := range rec.have {
					p.Chunks += bits.OnesCount8(b)
				}
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// VerifyPartial hashes each chunk of a partial blob that the index records
// as present and checks it against list (the chunk list the record names).
// It returns the bytes hashed, and an opm.ErrIntegrity error naming the
// first chunk that does not match (or a record that does not fit the list
// or the file).
func (l *Local) VerifyPartial(ctx context.Context, p PartialFile, list *opm.ChunkList) (int64, error) {
	idx := l.index()
	if idx == nil {
		return 0, nil
	}
	rec, found, err := idx.getPartial(p.Digest)
	if err != nil || !found {
		return 0, err
	}
	if len(rec.have) != (len(list.Chunks)+7)/8 {
		return 0, opm.Errorf(opm.ErrIntegrity, "partial blob %s: its record covers %d chunks, its list has %d", p.Digest, len(rec.have)*8, len(list.Chunks))
	}
	f, err := os.Open(p.Path)
	if err != nil {
		return 0, l.pathError(p.Digest, err)
	}
	defer f.Close()
	buf := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(buf)
	var hashed int64
	for i, want := range list.Chunks {
		if rec.have[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return hashed, err
		}
		off, n := list.Chunk(i)
		h := sha256.New()
		got, err := io.CopyBuffer(h, io.NewSectionReader(f, off, n), *buf)
		hashed += got
		if err != nil {
			return hashed, fmt.Errorf("partial blob %s: %w", p.Digest, err)
		}
		if d := digest.NewDigest(digest.SHA256, h); got != n || d != want {
			return hashed, opm.Errorf(opm.ErrIntegrity, "partial blob %s: chunk %d (%d bytes at %d) hashes to %s, its chunk list says %s", p.Digest, i, n, off, d, want)
		}
	}
	return hashed, nil
}

// DeletePartial removes a partial blob: its record, then its file. A
// reader that has it open reads on from the file it opened; its chunks
// fetched from now on are not kept.
func (l *Local) DeletePartial(d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	if idx := l.index(); idx != nil {
		if err := idx.deletePartial(d); err != nil {
			return err
		}
	}
	err := os.Remove(filepath.Join(l.dir, partialDir, d.Encoded()))
	if errors.Is(err, fs.ErrNotExist) {
		return opm.Errorf(opm.ErrNotFound, "partial blob %s not found", d)
	}
	return err
}
