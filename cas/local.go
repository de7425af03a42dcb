package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
)

// Local is the blob store of one home, <home>/blobs, laid out as drawn in the
// package comment. Bytes are streamed into a temporary file while being
// hashed, fsynced, and renamed into place only once their digest (and size,
// when known) match, then the directory is fsynced: a file under a digest's
// name is always exactly that digest's content.
//
// Local is safe for concurrent use. A Local made with an Index (or given
// one later by UseIndex) records in it what it stores, opens, verifies and
// deletes; failures to update the index are logged, since the files are the
// truth. Accesses update an entry's last access time at most once per
// TouchEvery, so that reading a blob costs no database write.
type Local struct {
	dir   string
	idx   atomic.Pointer[Index] // given to OpenLocal or UseIndex; nil: none
	added atomic.Int64          // bytes of blobs installed by this process

	touchMu sync.Mutex
	touched map[digest.Digest]time.Time // last index touch per blob
}

// TouchEvery is how often at most an access to one blob updates its last
// access time in the index.
const TouchEvery = time.Minute

// UseIndex makes the store record in idx from now on (nil: in no index),
// in place of the one it had. It is for an index opened after the store, as
// a home opens its index only when a command needs it.
func (l *Local) UseIndex(idx *Index) {
	l.idx.Store(idx)
	l.touchMu.Lock()
	l.touched = nil
	l.touchMu.Unlock()
}

// index returns the index the store records in, nil if none.
func (l *Local) index() *Index { return l.idx.Load() }

// Added returns the bytes of the blobs this process has installed in the
// store so far: it grows with every new blob (never shrinks), so a caller
// can tell cheaply whether the store grew since it last looked.
func (l *Local) Added() int64 { return l.added.Load() }

// Touch records an access to d now in the index (Index.Touch, at most once
// per TouchEvery per blob; a file the index does not know gets an entry);
// without an index it does nothing.
func (l *Local) Touch(d digest.Digest) { l.touch(d) }

var _ Store = (*Local)(nil)

// OpenLocal opens (creating if needed) the local store in dir, normally
// <home>/blobs. idx may be nil.
func OpenLocal(dir string, idx *Index) (*Local, error) {
	for _, sub := range []string{"sha256", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("open blob store: %w", err)
		}
	}
	l := &Local{dir: dir}
	l.idx.Store(idx)
	return l, nil
}

// Path returns where the file of d is or would be, or "" if d is not a valid
// sha256 digest.
func (l *Local) Path(d digest.Digest) string {
	if validate(d) != nil {
		return ""
	}
	return filepath.Join(l.FileTree(), FanPath(d))
}

// FileTree is the directory that holds every blob as a file, at FanPath
// below it. Blobs appear there complete and verified (renamed into place)
// and are only ever removed, never changed.
func (l *Local) FileTree() string { return filepath.Join(l.dir, "sha256") }

// FanPath is where the file of d is below a blob file tree (FileTree):
// "<first two hex digits>/<hex>". d must be a valid sha256 digest.
func FanPath(d digest.Digest) string {
	hex := d.Encoded()
	return hex[:2] + "/" + hex
}

// Has reports whether the blob is stored.
func (l *Local) Has(d digest.Digest) bool {
	_, err := l.Stat(context.Background(), d)
	return err == nil
}

// Stat returns the size of the stored blob, or opm.ErrNotFound.
func (l *Local) Stat(_ context.Context, d digest.Digest) (int64, error) {
	b, err := l.Info(d)
	return b.Size, err
}

// Open returns a reader of the blob that verifies it as it goes. A blob found
// corrupt is removed (so that a Cache fetches it again) and the reader
// returns an opm.ErrIntegrity error instead of io.EOF.
func (l *Local) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	f, _, err := l.openFile(d)
	if err != nil {
		return nil, err
	}
	rd, err := l.VerifiedReader(d, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{rd, f}, nil
}

// OpenRange returns part of the blob's file. The store verified the bytes
// when they came in; a range is not checked again (Open and fsck are).
func (l *Local) OpenRange(ctx context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	if err := validateRange(d, offset); err != nil {
		return nil, err
	}
	if wholeRange(offset, length) {
		return l.Open(ctx, d)
	}
	f, fi, err := l.openFile(d)
	if err != nil {
		return nil, err
	}
	n, err := rangeOf(d, fi.Size(), offset, length)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &exactReader{rc: struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, offset, n), f}, want: n}, nil
}

// VerifiedReader reads f, the file of blob d opened already, from its start
// as Open does. The caller closes f.
func (l *Local) VerifiedReader(d digest.Digest, f *os.File) (io.Reader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	v := newVerifier(io.NopCloser(io.NewSectionReader(f, 0, fi.Size())), d)
	v.onBad = func() { l.quarantine(d, fi) }
	v.onGood = func(n int64) { l.record(d, n) }
	return v, nil
}

// CopyOut writes the blob to dst, verifying every byte written. When dst is
// a file open for reading and writing, the kernel copies (copy_file_range)
// while the written bytes are read back and hashed; otherwise each buffer is
// hashed and written from the same memory, pipelined. On an opm.ErrIntegrity
// error dst has received wrong bytes and the caller must discard it; the
// corrupt blob is removed from the store.
func (l *Local) CopyOut(ctx context.Context, d digest.Digest, dst io.Writer) error {
	f, _, err := l.openFile(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return l.CopyFrom(ctx, d, f, dst)
}

// CopyFrom is CopyOut of a blob file opened already (src, left open).
func (l *Local) CopyFrom(ctx context.Context, d digest.Digest, f *os.File, dst io.Writer) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	var got digest.Digest
	var n int64
	fast := false
	if out, isFile := dst.(*os.File); isFile {
		got, n, fast, err = copyFileVerified(ctx, out, f, fi.Size())
	}
	if !fast {
		got, n, err = pipe(ctx, dst, counted(ctx, f))
	}
	if err != nil {
		return fmt.Errorf("blob %s: copy out: %w", d, err)
	}
	if got != d {
		l.quarantine(d, fi)
		return integrityError(d, -1, got, n)
	}
	l.record(d, n)
	return nil
}

// openFile opens the blob's file and touches its index entry.
func (l *Local) openFile(d digest.Digest) (*os.File, fs.FileInfo, error) {
	if err := validate(d); err != nil {
		return nil, nil, err
	}
	f, err := os.Open(l.Path(d))
	if err != nil {
		return nil, nil, l.pathError(d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("blob %s: %w", d, err)
	}
	l.touch(d)
	return f, fi, nil
}

// Put stores exactly size bytes from r under d, verified before they become
// visible.
func (l *Local) Put(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	if err := validatePut(d, size); err != nil {
		return err
	}
	if n, err := l.Stat(ctx, d); err == nil {
		return checkSize(d, size, n)
	}
	s, err := l.stage(ctx, r, d, size)
	if err != nil {
		return err
	}
	return l.commit(s)
}

// Ingest stores the bytes of r under the digest it computes while writing
// them, and returns that digest and the length.
func (l *Local) Ingest(ctx context.Context, r io.Reader) (digest.Digest, int64, error) {
	s, err := l.stage(ctx, r, "", -1)
	if err != nil {
		return "", 0, err
	}
	if err := l.commit(s); err != nil {
		return "", 0, err
	}
	return s.d, s.n, nil
}

// IngestFile stores the file at path, as Ingest. The file is read once into
// buffers that are hashed and then written to the temporary file from the
// same memory, so the digest is of the bytes that were stored even if the
// file changes meanwhile (a file changing during ingest gives a digest of a
// mix of old and new bytes, stored correctly under that digest).
func (l *Local) IngestFile(ctx context.Context, path string) (digest.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	return l.Ingest(ctx, f)
}

// Delete removes the blob, or fails with opm.ErrNotFound.
func (l *Local) Delete(_ context.Context, d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	if err := os.Remove(l.Path(d)); err != nil {
		return l.pathError(d, err)
	}
	l.forget(d)
	return nil
}

// Close does nothing; the Index, if any, is closed by whoever opened it.
func (l *Local) Close() error { return nil }

// Walk calls fn for every stored blob, in no particular order. Files whose
// names are not digests are skipped.
func (l *Local) Walk(fn func(d digest.Digest, size int64) error) error {
	return l.WalkInfo(func(b BlobInfo) error { return fn(b.Digest, b.Size) })
}

// WalkInfo is Walk with each file's modification time.
func (l *Local) WalkInfo(fn func(BlobInfo) error) error {
	root := filepath.Join(l.dir, "sha256")
	fans, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("walk blob store: %w", err)
	}
	for _, fan := range fans {
		entries, err := os.ReadDir(filepath.Join(root, fan.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("walk blob store: %w", err)
		}
		for _, e := range entries {
			d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
			if !e.Type().IsRegular() || validate(d) != nil || e.Name()[:2] != fan.Name() {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("walk blob store: %w", err)
			}
			if err := fn(BlobInfo{Digest: d, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// CleanTemp removes leftover temporary files. Call it when no write is in
// progress, e.g. when the home is opened.
func (l *Local) CleanTemp() error {
	dir := filepath.Join(l.dir, "tmp")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean blob temp files: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// staged is a temporary file holding verified bytes, not yet visible.
type staged struct {
	f *os.File
	d digest.Digest
	n int64
}

func (s *staged) discard() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// stage writes r into a new temporary file while hashing it. With want set
// it verifies the digest (and size, if size >= 0) and fails with
// opm.ErrIntegrity, leaving nothing behind, on a mismatch.
func (l *Local) stage(ctx context.Context, r io.Reader, want digest.Digest, size int64) (*staged, error) {
	return l.stageAlso(ctx, r, want, size, nil)
}

// stageAlso is stage that also writes every byte stored to also (when
// not nil), from the same buffers, after the bytes are hashed.
func (l *Local) stageAlso(ctx context.Context, r io.Reader, want digest.Digest, size int64, also io.Writer) (*staged, error) {
	f, err := os.CreateTemp(filepath.Join(l.dir, "tmp"), "put-*")
	if err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	s := &staged{f: f}
	if size >= 0 {
		r = io.LimitReader(r, size+1) // one more byte shows a long reader
	}
	var w io.Writer = &writebackWriter{f: f}
	if also != nil {
		w = io.MultiWriter(w, also)
	}
	s.d, s.n, err = pipe(ctx, w, counted(ctx, r))
	if err == nil && want != "" && (s.d != want || size >= 0 && s.n != size) {
		err = integrityError(want, size, s.d, s.n)
	}
	if err != nil {
		s.discard()
		if errors.Is(err, opm.ErrIntegrity) {
			return nil, err
		}
		return nil, fmt.Errorf("blob store: write: %w", err)
	}
	return s, nil
}

// writebackWriter writes to f and starts the disk write of every
// writebackSize bytes as soon as they are written, so that writing to disk
// overlaps with hashing instead of all waiting for the final fsync.
type writebackWriter struct {
	f      *os.File
	off    int64 // bytes written
	synced int64 // bytes handed to startWriteback
}

const writebackSize = 8 << 20

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.synced >= writebackSize {
		startWriteback(w.f, w.synced, w.off-w.synced)
		w.synced = w.off
	}
	return n, err
}

// commit makes a staged file visible under its digest. If the blob is
// already there the staged file is dropped.
func (l *Local) commit(s *staged) error {
	if l.reuse(s.d) {
		s.discard()
		return nil
	}
	if err := install(s.f, l.Path(s.d)); err != nil {
		s.discard()
		return err
	}
	l.installed(s.d, s.n)
	return nil
}

// installed notes a blob of n bytes newly made visible under d: it counts
// in Added and is recorded in the index.
func (l *Local) installed(d digest.Digest, n int64) {
	l.added.Add(n)
	l.record(d, n)
}

// reuse reports whether d is already stored, for a write that need not
// store it again. If it is, the file's modification time becomes now, so
// that garbage collection, which spares blobs written within its grace
// period, also spares one a push is about to name again. Setting the time
// is also the existence check: one system call.
func (l *Local) reuse(d digest.Digest) bool {
	path := l.Path(d)
	err := os.Chtimes(path, time.Time{}, time.Now())
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		if _, serr := os.Stat(path); serr != nil {
			return false
		}
		slog.Warn("blob store: cannot update modification time", "digest", d, "err", err)
	}
	l.touch(d)
	return true
}

// install makes f read-only, fsyncs and closes it, renames it to path and
// fsyncs the directory (and the parent of a new fan-out directory).
func install(f *os.File, path string) error {
	err := settle(f, path)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("blob store: %w", cerr)
	}
	return err
}

// settle is install but for closing f.
func settle(f *os.File, path string) error {
	if err := f.Chmod(0o444); err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	fan := filepath.Dir(path)
	if err := os.Mkdir(fan, 0o755); err == nil {
		if err := syncDir(filepath.Dir(fan)); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("blob store: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	return syncDir(fan)
}

// quarantine removes a blob found corrupt, unless the file at its path is no
// longer the one that was read (a good copy may have replaced it).
func (l *Local) quarantine(d digest.Digest, read fs.FileInfo) {
	path := l.Path(d)
	slog.Warn("blob store: removing corrupt blob", "digest", d, "path", path)
	if cur, err := os.Lstat(path); err == nil && os.SameFile(cur, read) {
		if err := os.Remove(path); err != nil {
			slog.Warn("blob store: cannot remove corrupt blob", "digest", d, "err", err)
		}
	}
	l.forget(d)
}

func (l *Local) record(d digest.Digest, size int64) {
	idx := l.index()
	if idx == nil {
		return
	}
	if err := idx.Record(d, size); err != nil {
		slog.Warn("blob index: record failed", "digest", d, "err", err)
		return
	}
	l.touchedNow(d)
}

// touchedNow notes that d's entry was just brought up to date; it reports
// false if that was done less than TouchEvery ago.
func (l *Local) touchedNow(d digest.Digest) bool {
	now := time.Now()
	l.touchMu.Lock()
	defer l.touchMu.Unlock()
	if t, ok := l.touched[d]; ok && now.Sub(t) < TouchEvery {
		return false
	}
	if l.touched == nil || len(l.touched) >= 1<<16 {
		l.touched = make(map[digest.Digest]time.Time) // bounded; forgetting costs one write per blob
	}
	l.touched[d] = now
	return true
}

func (l *Local) touch(d digest.Digest) {
	idx := l.index()
	if idx == nil || !l.touchedNow(d) {
		return
	}
	err := idx.Touch(d)
	if errors.Is(err, opm.ErrNotFound) {
		// A file from before the index (or a rebuilt one): record it.
		if fi, serr := os.Stat(l.Path(d)); serr == nil {
			err = idx.Add(d, fi.Size())
		}
	}
	if err != nil && !errors.Is(err, opm.ErrNotFound) {
		slog.Warn("blob index: touch failed", "digest", d, "err", err)
	}
}

func (l *Local) forget(d digest.Digest) {
	l.touchMu.Lock()
	delete(l.touched, d)
	l.touchMu.Unlock()
	idx := l.index()
	if idx == nil {
		return
	}
	if err := idx.Delete(d); err != nil {
		slog.Warn("blob index: delete failed", "digest", d, "err", err)
	}
}

func (l *Local) pathError(d digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return opm.Errorf(opm.ErrNotFound, "blob %s not found", d)
	}
	return fmt.Errorf("blob %s: %w", d, err)
}

// checkSize compares the size a caller claims with the size stored.
func checkSize(d digest.Digest, want, stored int64) error {
	if want != stored {
		return opm.Errorf(opm.ErrIntegrity, "blob %s: size %d, but the stored blob has %d bytes", d, want, stored)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blob store: sync %s: %w", dir, err)
	}
	return nil
}
