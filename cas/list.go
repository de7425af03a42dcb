package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"gocloud.dev/blob"
)

// BlobInfo is what a listing knows about one stored blob.
type BlobInfo struct {
	Digest  digest.Digest
	Size    int64
	ModTime time.Time // when it was written (a bucket's last-modified time)
}

// List calls fn for every blob in the bucket, in key order. Keys under
// blobs/sha256/ that are not digests are skipped. Only garbage collection
// lists a bucket; everything else finds blobs from the metadata.
func (b *Bucket) List(ctx context.Context, fn func(BlobInfo) error) error {
	const prefix = "blobs/sha256/"
	b.requests.Add(1)
	it := b.sdk.List(&blob.ListOptions{Prefix: prefix}) // the client that retries a page
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list bucket: %w", err)
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(obj.Key, prefix))
		if obj.IsDir || validate(d) != nil {
			continue
		}
		if err := fn(BlobInfo{Digest: d, Size: obj.Size, ModTime: obj.ModTime}); err != nil {
			return err
		}
	}
}

// Info returns the size and modification time of the stored blob, or
// opm.ErrNotFound.
func (l *Local) Info(d digest.Digest) (BlobInfo, error) {
	if err := validate(d); err != nil {
		return BlobInfo{}, err
	}
	fi, err := os.Stat(l.Path(d))
	if err != nil {
		return BlobInfo{}, l.pathError(d, err)
	}
	return BlobInfo{Digest: d, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// TempFile is a leftover (or in-progress) temporary file of the store.
type TempFile struct {
	Path    string
	Size    int64
	ModTime time.Time
}

// TempFiles lists the files in the store's temporary directory: writes in
// progress, or leftovers of writers that crashed.
func (l *Local) TempFiles() ([]TempFile, error) {
	dir := filepath.Join(l.dir, "tmp")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("blob store temp files: %w", err)
	}
	var out []TempFile
	for _, e := range entries {
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // finished meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("blob store temp files: %w", err)
		}
		out = append(out, TempFile{Path: filepath.Join(dir, e.Name()), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return out, nil
}

// RemoveTemp removes a temporary file listed by TempFiles unless it was
// modified after notAfter (its writer may still be running). It reports
// whether it removed the file.
func (l *Local) RemoveTemp(t TempFile, notAfter time.Time) (bool, error) {
	if filepath.Dir(t.Path) != filepath.Join(l.dir, "tmp") {
		return false, fmt.Errorf("%s is not a temporary file of the blob store", t.Path)
	}
	fi, err := os.Stat(t.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.ModTime().After(notAfter) {
		return false, nil
	}
	if err := os.Remove(t.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// Verify re-hashes the stored blob and returns the number of bytes read.
// A file whose bytes do not match its name is an opm.ErrIntegrity error; it
// is left in place (Delete removes it).
func (l *Local) Verify(ctx context.Context, d digest.Digest) (int64, error) {
	return l.VerifyTo(ctx, d, io.Discard)
}

// VerifyTo is Verify that also writes the bytes it re-hashes to w (a
// chunk hasher, say), from the same buffers.
func (l *Local) VerifyTo(ctx context.Context, d digest.Digest, w io.Writer) (int64, error) {
	if err := validate(d); err != nil {
		return 0, err
	}
	f, err := os.Open(l.Path(d))
	if err != nil {
		return 0, l.pathError(d, err)
	}
	defer f.Close()
	got, n, err := pipe(ctx, w, counted(ctx, f))
	if err != nil {
		return n, fmt.Errorf("blob %s: %w", d, err)
	}
	if got != d {
		return n, integrityError(d, -1, got, n)
	}
	return n, nil
}

// Verify re-hashes the bucket's copy of the blob, returning the number of
// bytes read; wrong bytes are an opm.ErrIntegrity error.
func (b *Bucket) Verify(ctx context.Context, d digest.Digest) (int64, error) {
	return b.VerifyTo(ctx, d, io.Discard)
}

// VerifyTo is Verify that also writes the bytes it reads to w.
func (b *Bucket) VerifyTo(ctx context.Context, d digest.Digest, w io.Writer) (int64, error) {
	rc, err := b.Open(ctx, d)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(w, counted(ctx, rc))
}
