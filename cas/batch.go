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

	"github.com/opencontainers/go-digest"
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
	staged []*staged
}

// NewBatch starts a batch. Commit or Discard it.
func (l *Local) NewBatch() *Batch { return &Batch{l: l} }

// smallFile is the size up to which a file is read, hashed and written in
// one piece rather than through the pipeline.
const smallFile = 1 << 20

// IngestFile stages the file at path and returns its digest and length. It
// is safe for concurrent use.
func (b *Batch) IngestFile(ctx context.Context, path string) (digest.Digest, int64, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("ingest: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("ingest: %w", err)
	}
	var s *staged
	if fi.Size() <= smallFile {
		s, err = b.l.stageSmall(src)
	} else {
		s, err = b.l.stage(ctx, src, "", -1)
	}
	if err != nil {
		return "", 0, err
	}
	b.mu.Lock()
	b.staged = append(b.staged, s)
	b.mu.Unlock()
	return s.d, s.n, nil
}

// stageSmall writes a small file to a temporary file from one buffer: the
// digest is of the bytes written, whatever the source does meanwhile.
func (l *Local) stageSmall(src io.Reader) (*staged, error) {
	buf, err := io.ReadAll(io.LimitReader(src, smallFile*4))
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	f, err := os.CreateTemp(filepath.Join(l.dir, "tmp"), "put-*")
	if err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	s := &staged{f: f, n: int64(len(buf))}
	sum := sha256.Sum256(buf)
	s.d = digest.NewDigestFromBytes(digest.SHA256, sum[:])
	if _, err := f.Write(buf); err != nil {
		s.discard()
		return nil, fmt.Errorf("blob store: write: %w", err)
	}
	return s, nil
}

// Commit makes every staged file durable and visible under its digest.
func (b *Batch) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	staged := b.staged
	b.staged = nil
	for i, s := range staged {
		err := s.f.Chmod(0o444)
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			for _, rest := range staged[i:] {
				rest.discard()
			}
			return fmt.Errorf("blob store: %w", err)
		}
	}
	tmp := filepath.Join(b.l.dir, "tmp")
	files := make([]string, len(staged))
	for i, s := range staged {
		files[i] = s.f.Name()
	}
	if err := flushFiles(tmp, files); err != nil {
		return err
	}
	dirs := map[string]bool{filepath.Join(b.l.dir, "sha256"): true}
	for _, s := range staged {
		path := b.l.Path(s.d)
		if _, err := os.Stat(path); err == nil {
			os.Remove(s.f.Name())
			continue
		}
		dirs[filepath.Dir(path)] = true
		if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("blob store: %w", err)
		}
		if err := os.Rename(s.f.Name(), path); err != nil {
			return fmt.Errorf("blob store: %w", err)
		}
		b.l.record(s.d, s.n)
	}
	return flushDirs(tmp, dirs)
}

// Discard drops every staged file.
func (b *Batch) Discard() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.staged {
		s.discard()
	}
	b.staged = nil
}

// syncFile fsyncs one file by name.
func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob store: sync %s: %w", name, err)
	}
	return nil
}
