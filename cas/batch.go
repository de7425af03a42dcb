package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/openpm/opm"
	"golang.org/x/sys/unix"
)

// Batch ingests many files and makes them durable together: files are
// written and hashed without an fsync each, then Commit flushes the whole
// filesystem once (syncfs), renames every file to its digest's name, and
// flushes once more. Ten thousand small files cost two flushes instead of
// twenty thousand. Nothing is visible under a digest's name before its
// bytes are on disk, as with Put.
type Batch struct {
	l      *Local
	mu     sync.Mutex
	items  []batchItem
	staged map[digest.Digest]string // the temporary file of each staged digest
	seq    atomic.Uint64
}

// batchItem is a staged file: closed, read-only, not yet flushed.
type batchItem struct {
	tmp    string
	d      digest.Digest
	n      int64
	chunks *opm.ChunkList
}

// NewBatch starts a batch. Commit or Discard it.
func (l *Local) NewBatch() *Batch { return &Batch{l: l} }

// smallFile is the size up to which a file is read, hashed and written in
// one piece rather than through the pipeline.
const smallFile = 1 << 20

// IngestFile stages the file at path and returns its digest and length. It
// is safe for concurrent use.
func (b *Batch) IngestFile(ctx context.Context, path string) (digest.Digest, int64, error) {
	d, n, _, err := b.IngestFileChunks(ctx, path)
	return d, n, err
}

// IngestFileChunks is IngestFile that also stages, in the same batch, the
// chunk list of a file big enough to have one (opm.ChunkSizeFor), hashed
// from the same bytes as the whole file's digest in the same pass, and
// returns the list's blob; nil for a smaller file (or one whose size
// changed while it was read).
func (b *Batch) IngestFileChunks(ctx context.Context, path string) (digest.Digest, int64, *opm.Descriptor, error) {
	it, err := b.stageSmall(path)
	if err == nil {
		progressed(ctx, it.n)
	}
	if errors.Is(err, errNotSmall) {
		it, err = b.stageLarge(ctx, path) // counted as it is read
	}
	if err != nil {
		return "", 0, nil, err
	}
	b.add(it)
	if it.chunks == nil {
		return it.d, it.n, nil, nil
	}
	body, _, err := it.chunks.Encode()
	if err != nil {
		return "", 0, nil, err
	}
	li, err := b.stageBytes(body)
	if err != nil {
		return "", 0, nil, err
	}
	b.add(li)
	return it.d, it.n, &opm.Descriptor{MediaType: opm.MediaTypeChunks, Digest: li.d, Size: li.n}, nil
}

// add makes a staged item part of the batch (nothing, for one stored
// already).
func (b *Batch) add(it batchItem) {
	if it.tmp == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.items = append(b.items, it)
	if b.staged == nil {
		b.staged = map[digest.Digest]string{}
	}
	b.staged[it.d] = it.tmp
}

// Open opens the bytes of a digest IngestFile returned, before or after
// Commit (staged, they are not yet durable: to read them, as an upload of
// the batch's files does, not to serve them as the store's).
func (b *Batch) Open(d digest.Digest) (*os.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if tmp, ok := b.staged[d]; ok {
		return os.Open(tmp)
	}
	return os.Open(b.l.Path(d))
}

var errNotSmall = errors.New("not a small file")

// stageSmall reads a small file whole, hashes the buffer and writes it to a
// new read-only temporary file from that same buffer, so the digest is of
// the bytes written. Plain system calls: for thousands of small files Go's
// poller registration of every *os.File costs more than the I/O.
func (b *Batch) stageSmall(path string) (batchItem, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return batchItem{}, fmt.Errorf("ingest: open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return batchItem{}, fmt.Errorf("ingest: stat %s: %w", path, err)
	}
	if st.Size > smallFile {
		unix.Close(fd)
		return batchItem{}, errNotSmall
	}
	buf := make([]byte, st.Size+1) // one more byte shows a file that grew
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return batchItem{}, fmt.Errorf("ingest: read %s: %w", path, err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	unix.Close(fd)
	if n > int(st.Size) {
		return batchItem{}, errNotSmall // it grew: take the streaming path
	}
	return b.stageBytes(buf[:n])
}

// stageBytes hashes buf and writes it to a new read-only temporary file of
// the batch (none when the store has it already).
func (b *Batch) stageBytes(buf []byte) (batchItem, error) {
	n := len(buf)
	sum := sha256.Sum256(buf)
	it := batchItem{d: digest.NewDigestFromBytes(digest.SHA256, sum[:]), n: int64(n)}
	if b.l.reuse(it.d) {
		return it, nil // already stored: nothing to write
	}
	it.tmp = filepath.Join(b.l.dir, "tmp", fmt.Sprintf("batch-%d-%d-%d", os.Getpid(), time.Now().UnixNano(), b.seq.Add(1)))
	out, err := unix.Open(it.tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return batchItem{}, fmt.Errorf("blob store: %w", err)
	}
	for w := 0; w < n; {
		m, err := unix.Write(out, buf[w:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Close(out)
			os.Remove(it.tmp)
			return batchItem{}, fmt.Errorf("blob store: write: %w", err)
		}
		w += m
	}
	if err := unix.Close(out); err != nil {
		os.Remove(it.tmp)
		return batchItem{}, fmt.Errorf("blob store: %w", err)
	}
	return it, nil
}

// stageLarge streams a file through the hashing pipeline.
func (b *Batch) stageLarge(ctx context.Context, path string) (batchItem, error) {
	src, err := os.Open(path)
	if err != nil {
		return batchItem{}, fmt.Errorf("ingest: %w", err)
	}
	defer src.Close()
	var hasher *opm.ChunkHasher
	fi, err := src.Stat()
	if err != nil {
		return batchItem{}, fmt.Errorf("ingest: %w", err)
	}
	cs := opm.ChunkSizeFor(fi.Size())
	var also io.Writer
	if cs > 0 {
		hasher = opm.NewChunkHasher(cs)
		also = hasher
	}
	s, err := b.l.stageAlso(ctx, src, "", -1, also)
	if err != nil {
		return batchItem{}, err
	}
	err = s.f.Chmod(0o444)
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(s.f.Name())
		return batchItem{}, fmt.Errorf("blob store: %w", err)
	}
	it := batchItem{tmp: s.f.Name(), d: s.d, n: s.n}
	if hasher != nil && opm.ChunkSizeFor(s.n) == cs {
		it.chunks = hasher.List()
	}
	return it, nil
}

// Commit makes every staged file durable and visible under its digest.
func (b *Batch) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	items := b.items
	b.items, b.staged = nil, nil
	tmp := filepath.Join(b.l.dir, "tmp")
	files := make([]string, len(items))
	for i, it := range items {
		files[i] = it.tmp
	}
	if err := flushFiles(tmp, files); err != nil {
		removeAll(items)
		return err
	}
	dirs := map[string]bool{filepath.Join(b.l.dir, "sha256"): true}
	for i, it := range items {
		if b.l.reuse(it.d) {
			os.Remove(it.tmp)
			continue
		}
		path := b.l.Path(it.d)
		dirs[filepath.Dir(path)] = true
		if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			removeAll(items[i:])
			return fmt.Errorf("blob store: %w", err)
		}
		if err := os.Rename(it.tmp, path); err != nil {
			removeAll(items[i:])
			return fmt.Errorf("blob store: %w", err)
		}
		b.l.installed(it.d, it.n)
	}
	return flushDirs(tmp, dirs)
}

func removeAll(items []batchItem) {
	for _, it := range items {
		os.Remove(it.tmp)
	}
}

// Discard drops every staged file.
func (b *Batch) Discard() {
	b.mu.Lock()
	defer b.mu.Unlock()
	removeAll(b.items)
	b.items, b.staged = nil, nil
}
