package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// buckets
	_ "gocloud.dev/blob/memblob"  // mem:// buckets
	_ "gocloud.dev/blob/s3blob"   // s3:// buckets
	"gocloud.dev/gcerrors"

	"github.com/openpm/opm"
)

// Bucket is a blob store in object storage, the registry's copy: key
// blobs/sha256/<hex>, written once. It does not trust the bucket's bytes:
// Open verifies them while they are read.
type Bucket struct {
	b *blob.Bucket
}

var _ Store = (*Bucket)(nil)

// OpenBucket opens a gocloud.dev/blob URL: file:///dir, mem://, or
// s3://bucket. For an S3-protocol server other than AWS, gocloud's s3blob
// takes the query parameters endpoint (http://host:port), use_path_style=true,
// disable_https=true and region, e.g.
//
//	s3://opm?endpoint=http://127.0.0.1:9000&use_path_style=true&disable_https=true&region=us-east-1
func OpenBucket(ctx context.Context, url string) (*Bucket, error) {
	b, err := blob.OpenBucket(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open bucket: %w", err)
	}
	return NewBucket(b), nil
}

// NewBucket uses an already open gocloud bucket. Close closes it.
func NewBucket(b *blob.Bucket) *Bucket { return &Bucket{b: b} }

func bucketKey(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

// Open returns a reader that verifies the blob as it goes.
func (b *Bucket) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	r, err := b.b.NewReader(ctx, bucketKey(d), nil)
	if err != nil {
		return nil, bucketError(d, err)
	}
	return newVerifier(r, d), nil
}

// Stat returns the size the bucket records for the blob.
func (b *Bucket) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if err := validate(d); err != nil {
		return 0, err
	}
	a, err := b.b.Attributes(ctx, bucketKey(d))
	if err != nil {
		return 0, bucketError(d, err)
	}
	return a.Size, nil
}

// Put uploads exactly size bytes from r, hashing them on the way. On a
// mismatch the upload is aborted (its context cancelled before Close), so
// nothing becomes visible. A blob already in the bucket with the right size
// is success.
func (b *Bucket) Put(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	if err := validatePut(d, size); err != nil {
		return err
	}
	err := b.present(ctx, d, size)
	if !errors.Is(err, opm.ErrNotFound) {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.b.NewWriter(wctx, bucketKey(d), &blob.WriterOptions{
		ContentType: "application/octet-stream",
		IfNotExist:  true,
	})
	if err != nil {
		return bucketError(d, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, size+1))
	if err == nil {
		if got := digest.NewDigest(digest.SHA256, h); got != d || n != size {
			err = integrityError(d, size, got, n)
		}
	}
	if err != nil {
		cancel()
		w.Close()
	} else {
		err = w.Close()
	}
	switch {
	case err == nil || errors.Is(err, opm.ErrIntegrity):
		return err
	case gcerrors.Code(err) == gcerrors.FailedPrecondition:
		// Written meanwhile by someone else: fine if it is the same size.
		return b.present(ctx, d, size)
	}
	return fmt.Errorf("blob %s: upload: %w", d, err)
}

// present returns nil if the bucket has d with the given size, an
// opm.ErrNotFound error if it does not have d, and an opm.ErrIntegrity error
// if its copy has another size.
func (b *Bucket) present(ctx context.Context, d digest.Digest, size int64) error {
	n, err := b.Stat(ctx, d)
	if err != nil {
		return err
	}
	return checkSize(d, size, n)
}

// Delete removes the blob, or fails with opm.ErrNotFound.
func (b *Bucket) Delete(ctx context.Context, d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	if err := b.b.Delete(ctx, bucketKey(d)); err != nil {
		return bucketError(d, err)
	}
	return nil
}

// Close closes the bucket.
func (b *Bucket) Close() error {
	if err := b.b.Close(); err != nil {
		return fmt.Errorf("close bucket: %w", err)
	}
	return nil
}

// bucketError translates gocloud's error codes into opm's errors.
func bucketError(d digest.Digest, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("blob %s: %w", d, opm.ErrNotFound)
	}
	return fmt.Errorf("blob %s: bucket: %w", d, err)
}
