package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/opencontainers/go-digest"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// buckets
	_ "gocloud.dev/blob/memblob"  // mem:// buckets
	"gocloud.dev/blob/s3blob"     // s3:// buckets
	"gocloud.dev/gcerrors"

	"github.com/openpm/opm"
)

// Bucket is a blob store in object storage, the registry's copy: key
// blobs/sha256/<hex>, written once. It does not trust the bucket's bytes:
// Open verifies them while they are read.
//
// Transient failures (see Retry) of Stat, Delete, the existence check and
// upload of Put, and of Open up to its first byte are tried again. A read
// failing once bytes have been handed out is not: the caller (a Cache
// downloading the blob) starts again from the beginning.
type Bucket struct {
	b *blob.Bucket
	// Retry is the policy for transient failures, DefaultRetry() unless
	// changed before the bucket is used. A Cache made afterwards over this
	// bucket takes it too.
	Retry Retry
}

var _ Store = (*Bucket)(nil)

// OpenBucket opens a gocloud.dev/blob URL: file:///dir, mem://, or
// s3://bucket. For an S3-protocol server other than AWS, gocloud's s3blob
// takes the query parameters endpoint (http://host:port), use_path_style=true,
// disable_https=true and region, e.g.
//
//	s3://opm?endpoint=http://127.0.0.1:9000&use_path_style=true&disable_https=true&region=us-east-1
//
// The S3 SDK's own retries are turned off, so that the bucket's Retry is the
// only retry layer and its bounds hold, and so is the SDK's CRC check of
// downloaded bodies (unless the URL sets response_checksum_validation): Open
// verifies the sha256 of every byte, and a body that fails it is an
// opm.ErrIntegrity error, not an SDK error.
func OpenBucket(ctx context.Context, url string) (*Bucket, error) {
	b, err := blob.OpenBucket(ctx, url)
	if err == nil {
		b, err = ownS3Retries(ctx, b, url)
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket: %w", err)
	}
	return NewBucket(b), nil
}

// ownS3Retries reopens an s3:// bucket with the client gocloud made for it,
// minus the SDK's retries and (unless the URL asks for it) its response
// checksum validation. Other buckets are returned as they are.
func ownS3Retries(ctx context.Context, b *blob.Bucket, rawURL string) (*blob.Bucket, error) {
	var client *s3.Client
	if !b.As(&client) {
		return b, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		b.Close()
		return nil, err
	}
	q := u.Query()
	// The options s3blob's URL opener takes from the URL for the bucket
	// rather than the client.
	opts := &s3blob.Options{
		KMSEncryptionID:            q.Get("kmskeyid"),
		RequestChecksumCalculation: client.Options().RequestChecksumCalculation,
	}
	for _, t := range types.ServerSideEncryptionAes256.Values() {
		if strings.EqualFold(string(t), q.Get("ssetype")) {
			opts.EncryptionType = t
		}
	}
	client = s3.New(client.Options(), func(o *s3.Options) {
		o.Retryer = retry.AddWithMaxAttempts(o.Retryer, 1)
		if !q.Has("response_checksum_validation") {
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	nb, err := s3blob.OpenBucket(ctx, client, u.Host, opts)
	b.Close()
	return nb, err
}

// NewBucket uses an already open gocloud bucket. Close closes it.
func NewBucket(b *blob.Bucket) *Bucket { return &Bucket{b: b, Retry: DefaultRetry()} }

func bucketKey(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

// Open returns a reader that verifies the blob as it goes. Opening is
// retried; reading is not.
func (b *Bucket) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	return b.open(ctx, d, b.Retry)
}

// openOnce opens with one try, for a Cache that retries whole downloads.
func (b *Bucket) openOnce(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	return b.open(ctx, d, NoRetry)
}

func (b *Bucket) open(ctx context.Context, d digest.Digest, p Retry) (io.ReadCloser, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	var r *blob.Reader
	n, err := p.do(ctx, d, "open", transient, func() (err error) {
		r, err = b.b.NewReader(ctx, bucketKey(d), nil)
		return err
	})
	if err != nil {
		return nil, bucketError(d, "open", n, err)
	}
	return newVerifier(r, d), nil
}

// Stat returns the size the bucket records for the blob.
func (b *Bucket) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if err := validate(d); err != nil {
		return 0, err
	}
	var a *blob.Attributes
	n, err := b.Retry.do(ctx, d, "stat", transient, func() (err error) {
		a, err = b.b.Attributes(ctx, bucketKey(d))
		return err
	})
	if err != nil {
		return 0, bucketError(d, "stat", n, err)
	}
	return a.Size, nil
}

// Put uploads exactly size bytes from r, hashing them on the way. On a
// mismatch the upload is aborted (its context cancelled before Close), so
// nothing becomes visible. A blob already in the bucket with the right size
// is success. A failed upload is tried again only when r is an io.Seeker
// (it is rewound to where it was); a failure to read r is not retried.
func (b *Bucket) Put(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	if err := validatePut(d, size); err != nil {
		return err
	}
	err := b.present(ctx, d, size)
	if !errors.Is(err, opm.ErrNotFound) {
		return err
	}
	p := NoRetry
	var start int64
	seeker, ok := r.(io.Seeker)
	if ok {
		if start, err = seeker.Seek(0, io.SeekCurrent); err == nil {
			p = b.Retry
		}
	}
	src := &sourceReader{r: r}
	tries := 0
	n, err := p.do(ctx, d, "upload", func(err error) bool { return src.err == nil && transient(err) }, func() error {
		if tries++; tries > 1 {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				src.err = err
				return err
			}
		}
		return b.upload(ctx, d, size, src)
	})
	switch {
	case err == nil || errors.Is(err, opm.ErrIntegrity) || errors.Is(err, opm.ErrNotFound):
		return err
	case src.err != nil:
		return fmt.Errorf("blob %s: upload: reading the source: %w", d, src.err)
	case gcerrors.Code(err) == gcerrors.FailedPrecondition:
		// Written meanwhile by someone else: fine if it is the same size.
		return b.present(ctx, d, size)
	}
	return bucketError(d, "upload", n, err)
}

// upload writes the blob once. The error is gocloud's (or an integrity
// error); IfNotExist makes a blob written meanwhile a FailedPrecondition.
func (b *Bucket) upload(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.b.NewWriter(wctx, bucketKey(d), &blob.WriterOptions{
		ContentType: "application/octet-stream",
		IfNotExist:  true,
	})
	if err != nil {
		return err
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
		return err
	}
	return w.Close()
}

// sourceReader remembers the error of the reader it reads, so that a
// failure of the caller's source is told apart from one of the bucket.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
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

// Delete removes the blob, or fails with opm.ErrNotFound. A blob found
// absent after a transient failure counts as deleted: the failed try may
// have removed it.
func (b *Bucket) Delete(ctx context.Context, d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	n, err := b.Retry.do(ctx, d, "delete", transient, func() error {
		return b.b.Delete(ctx, bucketKey(d))
	})
	switch {
	case err == nil, n > 1 && gcerrors.Code(err) == gcerrors.NotFound:
		return nil
	}
	return bucketError(d, "delete", n, err)
}

// Close closes the bucket.
func (b *Bucket) Close() error {
	if err := b.b.Close(); err != nil {
		return fmt.Errorf("close bucket: %w", err)
	}
	return nil
}

// bucketError translates gocloud's error codes into opm's errors, saying
// how many tries op took when there was more than one.
func bucketError(d digest.Digest, op string, attempts int, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("blob %s: %w", d, opm.ErrNotFound)
	}
	if attempts > 1 {
		return fmt.Errorf("blob %s: bucket: %s failed after %d attempts: %w", d, op, attempts, err)
	}
	return fmt.Errorf("blob %s: bucket: %w", d, err)
}
