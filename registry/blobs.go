package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
)

// Blob is a blob of the local store open for reading, kept from eviction
// until Close. It reads the bytes it opened whatever happens to the tags
// that name it afterwards.
type Blob struct {
	r       *Registry
	d       digest.Digest
	fd      int
	size    int64
	fetched bool
	part    *cas.Partial // a blob read chunk by chunk (OpenFileBlob); nil: whole
	release func()

	mu sync.Mutex
	f  *os.File // made on first use of File; owns fd then
}

// Fd is the open file's descriptor, for reads by offset (pread, splice,
// FUSE passthrough). It stays valid until Close.
func (b *Blob) Fd() int { return b.fd }

// Size is the blob's size.
func (b *Blob) Size() int64 { return b.size }

// Fetched reports whether opening the blob fetched it from the bucket.
func (b *Blob) Fetched() bool { return b.fetched }

// Lazy reports whether the blob is read chunk by chunk (OpenFileBlob): its
// file holds the bytes of a range only once Ready has returned nil for it.
func (b *Blob) Lazy() bool { return b.part != nil }

// Ready makes n bytes from off readable from the file: for a lazy blob it
// fetches (and verifies) the chunks of the range that are not local; for a
// whole blob it does nothing. An error means the range cannot be read now.
func (b *Blob) Ready(ctx context.Context, off, n int64) error {
	if b.part == nil {
		return nil
	}
	return b.part.Ensure(ctx, off, n)
}

// Stored makes a lazy blob whole in the local store: every chunk fetched
// (Ready), the whole hashed, checked and moved into the store. For a whole
// blob it does nothing.
func (b *Blob) Stored(ctx context.Context) error {
	if b.part == nil {
		return nil
	}
	if err := b.part.Ensure(ctx, 0, b.size); err != nil {
		return err
	}
	return b.part.Settle(ctx)
}

// File is the blob as an *os.File (for http.ServeContent and copies). Close
// closes it; the caller must not.
func (b *Blob) File() *os.File {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		b.f = os.NewFile(uintptr(b.fd), b.r.local.Path(b.d))
	}
	return b.f
}

// CopyTo writes the blob to dst, verifying every byte written (cas's
// Local.CopyOut). On an opm.ErrIntegrity error dst has received wrong bytes
// and must be discarded.
func (b *Blob) CopyTo(ctx context.Context, dst io.Writer) error {
	if err := b.Ready(ctx, 0, b.size); err != nil {
		return err
	}
	return b.r.local.CopyFrom(ctx, b.d, b.File(), dst)
}

// Reader reads the blob from its start, verifying it: wrong bytes end in an
// opm.ErrIntegrity error instead of io.EOF.
func (b *Blob) Reader() (io.Reader, error) {
	if err := b.Ready(context.Background(), 0, b.size); err != nil {
		return nil, err
	}
	return b.r.local.VerifiedReader(b.d, b.File())
}

// Close closes the file and lets eviction have the blob again.
func (b *Blob) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if b.f != nil {
		err = b.f.Close()
	} else if b.fd >= 0 {
		err = syscall.Close(b.fd)
	}
	b.fd = -1
	b.release()
	return err
}

// OpenBlob makes the blob d local (fetching it from the bucket, once
// however many ask at the same time, verified before it is stored) and
// opens its file: the one way every reader — the mount, the HTTP server,
// pull, an upload to another bucket — gets at content. size, when not
// negative, is what the manifest says; a local file of another size is an
// opm.ErrIntegrity error. A local blob costs two system calls: open and
// fstat.
func (r *Registry) OpenBlob(ctx context.Context, d digest.Digest, size int64) (*Blob, error) {
	if _, err := opm.ParseDigest(string(d)); err != nil {
		return nil, err
	}
	release := r.inuse.hold(d) // not evicted between the fetch and the open
	b := &Blob{r: r, d: d, fd: -1, release: release}
	path := r.local.Path(d)
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err == syscall.ENOENT {
		if err = r.ensureLocal(ctx, d); err != nil {
			release()
			return nil, err
		}
		b.fetched = true
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		release()
		return nil, fsError(&os.PathError{Op: "open", Path: path, Err: err})
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		release()
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if size >= 0 && st.Size != size {
		syscall.Close(fd)
		release()
		return nil, opm.Errorf(opm.ErrIntegrity, "blob %s: the local file has %d bytes, the manifest says %d", d, st.Size, size)
	}
	b.fd, b.size = fd, st.Size
	r.touches.touch(r, d) // for eviction's LRU order, in the background
	return b, nil
}

// OpenFileBlob opens the blob of a package file as OpenBlob does, but for
// a big file (one with a chunk list, opm.File.Chunks) whose blob is not
// local and the registry's bucket has: that blob is opened lazily (Lazy),
// to be read chunk by chunk, each fetched with a ranged GET and verified
// against the list before any byte of it is read (cas.Partial). A list
// that cannot be used (it cannot be fetched, does not parse or does not
// fit the file) is no failure: the blob is opened whole, and listErr says
// why, for the caller to log.
func (r *Registry) OpenFileBlob(ctx context.Context, f *opm.File) (b *Blob, listErr, err error) {
	if f.Chunks != nil && r.cache != nil && !r.local.Has(f.Digest) {
		b, listErr = r.openPartial(ctx, f)
		if listErr == nil {
			return b, nil, nil
		}
	}
	b, err = r.OpenBlob(ctx, f.Digest, f.Size)
	return b, listErr, err
}

// openStored opens f's blob whole in the store: fetched if need be (a big
// file's chunks by parallel ranges, transfer.jobs at a time, when its chunk
// list can be used), not evicted until closed.
func (r *Registry) openStored(ctx context.Context, f *opm.File) (*Blob, error) {
	blob, listErr, err := r.OpenFileBlob(ctx, f)
	if listErr != nil {
		slog.Warn("chunk list unusable; fetching the whole blob", "file", f.Path, "digest", f.Digest, "err", listErr.Error())
	}
	if err != nil {
		return nil, err
	}
	if err := blob.Stored(ctx); err != nil {
		blob.Close()
		return nil, err
	}
	return blob, nil
}

// openPartial opens f's blob through its chunk list: the Partial another
// reader has open, or a new one (the list read and checked first).
func (r *Registry) openPartial(ctx context.Context, f *opm.File) (*Blob, error) {
	release := r.inuse.hold(f.Digest) // once whole, not evicted while open
	p, err := r.cache.SharePartial(f.Digest, f.Chunks.Digest)
	if p == nil && err == nil {
		var list *opm.ChunkList
		if list, err = r.ChunkList(ctx, *f.Chunks, f.Size); err == nil {
			p, err = r.cache.OpenPartial(f.Digest, f.Chunks.Digest, list, r.TransferJobs())
		}
	}
	if err != nil {
		release()
		return nil, err
	}
	fd, err := unix.FcntlInt(p.File().Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		p.Close()
		release()
		return nil, fmt.Errorf("blob %s: %w", f.Digest, err)
	}
	return &Blob{r: r, d: f.Digest, fd: fd, size: f.Size, fetched: true, part: p,
		release: func() { p.Close(); release() }}, nil
}

// FetchChunkLists makes local the chunk lists of those files whose blobs
// are neither local nor being read, transfer.jobs at a time, so that the
// first read of one of them waits for one chunk, not for its list first.
// It is for a reader about to look into a package (the mount, when a
// package directory is first looked into); a failure is left to the read
// that needs the list.
func (r *Registry) FetchChunkLists(ctx context.Context, files []opm.File) {
	if r.cache == nil {
		return
	}
	var g errgroup.Group
	g.SetLimit(r.TransferJobs())
	for i := range files {
		f := &files[i]
		if f.Chunks == nil || r.local.Has(f.Chunks.Digest) || r.local.Has(f.Digest) {
			continue
		}
		g.Go(func() error {
			r.cache.Fetch(ctx, f.Chunks.Digest)
			return nil
		})
	}
	g.Wait()
}

// ChunkList reads and checks the chunk list d of a file of size bytes
// (fetched whole and verified first, if it is not local; never more than
// opm.MaxChunkListSize bytes of it).
func (r *Registry) ChunkList(ctx context.Context, d opm.Descriptor, size int64) (*opm.ChunkList, error) {
	if d.Size > opm.MaxChunkListSize {
		return nil, opm.Errorf(opm.ErrInvalid, "chunk list %s of %d bytes is over the %d-byte limit", d.Digest, d.Size, opm.MaxChunkListSize)
	}
	data, err := readSmallBlob(ctx, r.blobs, d.Digest, opm.MaxChunkListSize)
	if err == nil {
		var list *opm.ChunkList
		if list, err = opm.ParseChunkList(data, size); err == nil {
			return list, nil
		}
	}
	return nil, fmt.Errorf("chunk list %s: %w", d.Digest, err)
}

// ensureLocal makes a blob local, fetching it from the bucket when there is
// one.
func (r *Registry) ensureLocal(ctx context.Context, d digest.Digest) error {
	if r.local.Has(d) {
		return nil
	}
	if r.cache == nil {
		return opm.Errorf(opm.ErrNotFound, "blob %s is not in the registry, and this home has no bucket to fetch it from (opm fsck names the tags it breaks)", d)
	}
	r.fetches.Add(1)
	return r.cache.Fetch(ctx, d)
}

// Fetches counts the blobs this process has asked the bucket for (tried to
// fetch) to read them.
func (r *Registry) Fetches() int64 { return r.fetches.Load() }

// StatBlob returns the size of a blob the registry holds (in its bucket, or
// its local store), never fetching it.
func (r *Registry) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	return r.blobs.Stat(ctx, d)
}

// PutBlob stores a blob (in the bucket too, when there is one), verified
// against d and size before it becomes visible. No tag names it yet: gc's
// grace period keeps it until one does.
func (r *Registry) PutBlob(ctx context.Context, d digest.Digest, size int64, rd io.Reader) error {
	err := r.blobs.Put(ctx, d, size, rd)
	if errors.Is(err, opm.ErrIntegrity) {
		// The bytes came from the caller, not from the registry's store.
		return opm.WithKind(opm.ErrDigestInvalid, err)
	}
	return err
}

// ErrBlobNamed refuses to delete a blob that a manifest names.
var ErrBlobNamed = opm.WithKind(opm.ErrConflict, errors.New("the blob is named by a manifest"))

// DeleteBlob removes a blob from the registry's store (the bucket and the
// local store) unless a manifest at the head names it: deleting it would
// break that manifest (ErrBlobNamed). It keeps blobs by gc's rule
// (namedBlobs): while a manifest does not parse, what it names is unknown
// and no blob is deleted (ErrBlobNamed too). It holds the gc lock
// exclusively, as gc does: a writer that found the blob stored and is about
// to name it (docs/design.md §4) commits first, and the check then sees its
// manifest.
func (r *Registry) DeleteBlob(ctx context.Context, d digest.Digest) error {
	if _, err := opm.ParseDigest(string(d)); err != nil {
		return err
	}
	release, err := holdForGC(ctx, r.dir)
	if err != nil {
		return err
	}
	defer release()
	v, err := r.View()
	if err != nil {
		return err
	}
	user, err := v.BlobUser(ctx, d)
	if errors.Is(err, errUnknownBlobs) {
		return opm.WithKind(ErrBlobNamed, fmt.Errorf("blob %s is kept: %s; mend or delete that manifest first (see opm fsck)", d, opm.OneLine(err)))
	}
	if err != nil {
		return err
	}
	if user != "" {
		return opm.WithKind(ErrBlobNamed, fmt.Errorf("blob %s is named by %s; delete that manifest first", d, user))
	}
	return r.blobs.Delete(ctx, d)
}

// storeBlobs puts the blobs a manifest names that are not yet in the
// registry's copy: the config and empty-file blobs into the local store, and
// everything into the bucket when there is one, through up (the uploads
// the push started as it hashed the files; nil without a bucket).
func (r *Registry) storeBlobs(ctx context.Context, m *opm.Manifest, up *uploads) error {
	for _, small := range [][]byte{opm.EmptyJSON, nil} {
		d := digest.FromBytes(small)
		if err := r.local.Put(ctx, d, int64(len(small)), bytes.NewReader(small)); err != nil {
			return err
		}
	}
	if up == nil {
		return nil
	}
	for _, d := range m.Blobs() {
		up.add(d.Digest, d.Size, r.openLocal(d))
	}
	return up.wait()
}

// uploadBlobs puts into b, in parallel, the blobs it lacks from this
// registry.
func (r *Registry) uploadBlobs(ctx context.Context, b cas.Storer, blobs []opm.Descriptor) error {
	u := r.newUploads(ctx, b)
	for _, d := range blobs {
		u.add(d.Digest, d.Size, r.openLocal(d))
	}
	return u.wait()
}

// openLocal opens a blob of the local store for an upload, verifying it as
// it is read.
func (r *Registry) openLocal(d opm.Descriptor) func(context.Context) (io.ReadCloser, error) {
	return func(ctx context.Context) (io.ReadCloser, error) {
		blob, err := r.OpenBlob(ctx, d.Digest, d.Size)
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", d.Digest, err)
		}
		rd, err := blob.Reader()
		if err != nil {
			blob.Close()
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{rd, blob}, nil
	}
}

// uploads puts blobs into a bucket as they are handed to it, transfer.jobs
// at a time, each digest once: a push starts uploading a file as soon as it
// is hashed. A big blob is looked up first (a blob the bucket has then
// costs one lookup and no read), a small one sent at once (cas.Bucket.Put).
// The first failure cancels the rest.
type uploads struct {
	b      cas.Storer
	g      *errgroup.Group
	ctx    context.Context
	cancel context.CancelFunc // stops them all
	mu     sync.Mutex
	sent   map[digest.Digest]bool
}

func (r *Registry) newUploads(ctx context.Context, b cas.Storer) *uploads {
	ctx, cancel := context.WithCancel(ctx)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(r.TransferJobs())
	return &uploads{b: b, g: g, ctx: ctx, cancel: cancel, sent: map[digest.Digest]bool{}}
}

// add uploads d (size bytes, read from what open returns) unless it was
// added before; it waits while transfer.jobs uploads are under way.
func (u *uploads) add(d digest.Digest, size int64, open func(context.Context) (io.ReadCloser, error)) {
	u.mu.Lock()
	seen := u.sent[d]
	u.sent[d] = true
	u.mu.Unlock()
	if seen {
		return
	}
	u.g.Go(func() error {
		_, err := cas.Copy(u.ctx, u.b, d, size, false, func() (io.ReadCloser, error) { return open(u.ctx) })
		return err // the bucket's errors name the blob and the upload
	})
}

// failed is the context of the uploads, done once one has failed.
func (u *uploads) failed() context.Context { return u.ctx }

// wait waits for every upload added and returns the first failure.
func (u *uploads) wait() error {
	err := u.g.Wait()
	u.cancel()
	return err
}

// LocalUsage counts the blobs of the local store and their bytes (a walk of
// the store), partial blobs with the disk space of their chunks.
func (r *Registry) LocalUsage() (blobs int, bytes int64, err error) {
	err = r.local.Walk(func(_ digest.Digest, size int64) error {
		blobs++
		bytes += size
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	parts, err := r.local.Partials()
	for _, p := range parts {
		blobs++
		bytes += p.Bytes // the chunks it holds
	}
	return blobs, bytes, err
}

// BlobsInUse is the number of blobs being read (open in the mount, copied
// by a command).
func (r *Registry) BlobsInUse() int { return r.inuse.count() }

// toucher touches opened blobs in the index (Local.Touch) off the read
// path: an index write (at most once a minute per blob) takes the index's
// lock and may wait for Badger. When it is behind, an access is not
// recorded (access times only order eviction).
type toucher struct {
	once sync.Once
	ch   chan digest.Digest
	done chan struct{}
	mu   sync.Mutex
	quit bool
}

func (t *toucher) touch(r *Registry, d digest.Digest) {
	t.once.Do(func() {
		t.ch = make(chan digest.Digest, 1024)
		t.done = make(chan struct{})
		go func() {
			defer close(t.done)
			for d := range t.ch {
				r.local.Touch(d)
			}
		}()
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.quit {
		return
	}
	select {
	case t.ch <- d:
	default:
	}
}

// stop ends the touching goroutine, if one runs, once it has touched what
// was sent.
func (t *toucher) stop() {
	t.mu.Lock()
	started := t.ch != nil && !t.quit
	t.quit = true
	t.mu.Unlock()
	if started {
		close(t.ch)
		<-t.done
	}
}
