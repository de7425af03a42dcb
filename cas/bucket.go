package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
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
// Transient failures (see Retry) of Stat, Delete, Put's existence check, and
// Open up to its first byte are tried again. A read failing once bytes have
// been handed out is not: the caller (a Cache downloading the blob) starts
// again from the beginning. Uploads to s3:// are retried by the S3 SDK, which
// holds the part it sends, with the same policy.
type Bucket struct {
	// b serves the calls opm retries itself (see Retry.do); its S3 client
	// does not retry. sdk's S3 client retries with Retry's tries and waits:
	// it serves uploads, which only the SDK can retry as it holds what it
	// sends, and suits any call opm does not retry (a listing's pages).
	// For other than s3:// buckets both are the same bucket.
	b, sdk *blob.Bucket
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
// The Bucket's Retry is the only retry layer: the S3 SDK's own retries are
// turned off but for uploads, where the SDK retries with the Bucket's
// policy. The SDK's CRC check of downloaded bodies is turned off too (unless
// the URL sets response_checksum_validation): Open verifies the sha256 of
// every byte, and a body that fails it is an opm.ErrIntegrity error.
func OpenBucket(ctx context.Context, url string) (*Bucket, error) {
	gb, err := blob.OpenBucket(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open bucket: %w", err)
	}
	b := NewBucket(gb)
	if err := b.ownS3Retries(ctx, url); err != nil {
		gb.Close()
		return nil, fmt.Errorf("open bucket: %w", err)
	}
	return b, nil
}

// ownS3Retries reopens an s3:// bucket over two copies of the client gocloud
// made for it: one without retries (and, unless the URL asks for it,
// without response checksum validation), one whose retries follow b.Retry,
// for uploads. Other buckets are left as they are.
func (b *Bucket) ownS3Retries(ctx context.Context, rawURL string) error {
	var client *s3.Client
	if !b.b.As(&client) {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
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
	reads := s3.New(client.Options(), func(o *s3.Options) {
		o.Retryer = retry.AddWithMaxAttempts(o.Retryer, 1)
		if !q.Has("response_checksum_validation") {
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	writes := s3.New(client.Options(), func(o *s3.Options) {
		o.Retryer = &sdkRetryer{
			RetryerV2: retry.NewStandard(func(so *retry.StandardOptions) { so.RateLimiter = ratelimit.None }),
			b:         b,
		}
	})
	rb, err := s3blob.OpenBucket(ctx, reads, u.Host, opts)
	if err != nil {
		return err
	}
	wb, err := s3blob.OpenBucket(ctx, writes, u.Host, opts)
	if err != nil {
		rb.Close()
		return err
	}
	b.b.Close()
	b.b, b.sdk = rb, wb
	return nil
}

// sdkRetryer is the S3 SDK's standard retryer (what it retries) with the
// tries and waits of the bucket's Retry, logging each retry.
type sdkRetryer struct {
	aws.RetryerV2
	b *Bucket
}

func (r *sdkRetryer) MaxAttempts() int { return max(r.b.Retry.Attempts, 1) }

func (r *sdkRetryer) RetryDelay(attempt int, err error) (time.Duration, error) {
	wait := r.b.Retry.wait(attempt)
	slog.Warn("bucket: retrying", "op", "upload", "attempt", attempt, "of", r.MaxAttempts(), "wait", wait, "err", err)
	return wait, nil
}

// NewBucket uses an already open gocloud bucket. Close closes it.
func NewBucket(b *blob.Bucket) *Bucket { return &Bucket{b: b, sdk: b, Retry: DefaultRetry()} }

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
	w, err := b.sdk.NewWriter(wctx, bucketKey(d), &blob.WriterOptions{
		ContentType: "application/octet-stream",
		IfNotExist:  true,
	})
	if err != nil {
		return bucketError(d, "upload", 1, err)
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
	err := b.b.Close()
	if b.sdk != b.b {
		err = errors.Join(err, b.sdk.Close())
	}
	if err != nil {
		return fmt.Errorf("close bucket: %w", err)
	}
	return nil
}

// bucketError translates gocloud's error codes into opm's errors, saying
// how many tries op took when there was more than one.
func bucketError(d digest.Digest, op string, attempts int, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return opm.Errorf(opm.ErrNotFound, "blob %s not found", d)
	}
	if attempts > 1 {
		return fmt.Errorf("blob %s: bucket: %s failed after %d attempts: %w", d, op, attempts, err)
	}
	return fmt.Errorf("blob %s: bucket: %w", d, err)
}
