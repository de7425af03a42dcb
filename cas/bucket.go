package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	neturl "net/url"
	"strings"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/googleapis/gax-go/v2"
	"github.com/opencontainers/go-digest"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob:// buckets
	_ "gocloud.dev/blob/fileblob"  // file:// buckets
	"gocloud.dev/blob/gcsblob"     // gs:// buckets
	_ "gocloud.dev/blob/memblob"   // mem:// buckets
	"gocloud.dev/blob/s3blob"      // s3:// buckets
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
	// name is the bucket's URL without its query, for messages.
	name string
	// requests counts the requests sent (see Requests).
	requests atomic.Int64
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
	var gb *blob.Bucket
	var err error
	if strings.HasPrefix(url, gcsblob.Scheme+"://") {
		gb, err = openGCS(ctx, url)
	} else {
		gb, err = blob.OpenBucket(ctx, url)
	}
	if errors.Is(err, opm.ErrPermission) {
		return nil, err // already one line naming the bucket and the fix
	}
	if err != nil {
		return nil, openError(url, err)
	}
	b := NewBucket(gb)
	b.name = bucketName(url)
	b.boundGCSRetries()
	if isAzure(url) {
		u, perr := neturl.Parse(url)
		if err = perr; err == nil {
			err = b.openAzure(ctx, u)
		}
	} else {
		err = b.ownS3Retries(ctx, url)
	}
	if err != nil {
		gb.Close()
		return nil, openError(url, err)
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
	u, err := neturl.Parse(rawURL)
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
	return b.reopen(
		func() (*blob.Bucket, error) { return s3blob.OpenBucket(ctx, reads, u.Host, opts) },
		func() (*blob.Bucket, error) { return s3blob.OpenBucket(ctx, writes, u.Host, opts) })
}

// reopen replaces the bucket gocloud opened from the URL with two, opened
// by reads (for b.b: no SDK retries) and writes (for b.sdk: uploads, with
// the SDK's retries following b.Retry).
func (b *Bucket) reopen(reads, writes func() (*blob.Bucket, error)) error {
	rb, err := reads()
	if err != nil {
		return err
	}
	wb, err := writes()
	if err != nil {
		rb.Close()
		return err
	}
	b.b.Close()
	b.b, b.sdk = rb, wb
	return nil
}

// boundGCSRetries gives a gs:// bucket's client the tries and waits of
// b.Retry. Left as it is, the client retries a read whose server has gone
// for as long as the context allows: forever, for a read without a deadline.
func (b *Bucket) boundGCSRetries() {
	var client *storage.Client
	if !b.b.As(&client) {
		return
	}
	client.SetRetry(
		storage.WithMaxAttempts(max(b.Retry.Attempts, 1)),
		storage.WithBackoff(gax.Backoff{Initial: max(b.Retry.Base, time.Millisecond), Max: max(b.Retry.Max, time.Millisecond), Multiplier: 2}),
	)
}

// boundGCSUpload bounds the tries of one upload to a gs:// bucket by
// b.Retry (boundGCSRetries does not reach it: the client retries an upload
// in one request for as long as its context allows, a dead server forever).
// For other buckets it does nothing.
func (b *Bucket) boundGCSUpload(as func(any) bool) error {
	var obj **storage.ObjectHandle
	if !as(&obj) {
		return nil
	}
	failures := 0
	*obj = (*obj).Retryer(storage.WithErrorFunc(func(err error) bool {
		failures++
		return failures < max(b.Retry.Attempts, 1) && storage.ShouldRetry(err)
	}))
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
func NewBucket(b *blob.Bucket) *Bucket {
	return &Bucket{b: b, sdk: b, Retry: DefaultRetry(), name: "(opened by the caller)"}
}

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
		b.requests.Add(1)
		r, err = b.b.NewReader(ctx, bucketKey(d), nil)
		return err
	})
	if err != nil {
		return nil, b.bucketError(d, "open", n, err)
	}
	return newVerifier(r, d), nil
}

// OpenRange reads a range with one ranged GET, retried up to its first
// byte like Open. The bytes are not verified (a range cannot be) but for the
// whole blob; the length is: a body cut short is io.ErrUnexpectedEOF.
func (b *Bucket) OpenRange(ctx context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	return b.openRange(ctx, d, offset, length, b.Retry)
}

// openRangeOnce opens a range with one try, for a Partial that retries a
// chunk's whole fetch (open, read, verify).
func (b *Bucket) openRangeOnce(ctx context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	return b.openRange(ctx, d, offset, length, NoRetry)
}

func (b *Bucket) openRange(ctx context.Context, d digest.Digest, offset, length int64, p Retry) (io.ReadCloser, error) {
	if err := validateRange(d, offset); err != nil {
		return nil, err
	}
	if wholeRange(offset, length) {
		return b.open(ctx, d, p)
	}
	var r *blob.Reader
	n, err := p.do(ctx, d, "open", rangeTransient, func() (err error) {
		b.requests.Add(1)
		r, err = b.b.NewRangeReader(ctx, bucketKey(d), offset, length, nil)
		return err
	})
	if err != nil {
		if rangeRefused(err) {
			// Servers refuse a range from the end on, and any range of an
			// empty blob (HTTP 416, which gocloud does not classify): the
			// blob's size tells.
			if size, serr := b.Stat(ctx, d); serr == nil && offset >= size {
				if _, rerr := rangeOf(d, size, offset, length); rerr != nil {
					return nil, rerr
				}
				return io.NopCloser(strings.NewReader("")), nil
			}
		}
		return nil, b.bucketError(d, "open", n, err)
	}
	want, err := rangeOf(d, r.Size(), offset, length)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &exactReader{rc: r, want: want}, nil
}

// Stat returns the size the bucket records for the blob.
func (b *Bucket) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if err := validate(d); err != nil {
		return 0, err
	}
	var a *blob.Attributes
	n, err := b.Retry.do(ctx, d, "stat", transient, func() (err error) {
		b.requests.Add(1)
		a, err = b.b.Attributes(ctx, bucketKey(d))
		return err
	})
	if err != nil {
		return 0, b.bucketError(d, "stat", n, err)
	}
	return a.Size, nil
}

// lookFirst says whether an upload of size bytes asks the bucket first if
// it has the blob, rather than send it at once with a conditional write
// (IfNotExist: If-None-Match: * on S3 and Azure, a generation precondition
// on GCS) that the bucket refuses when it has it. Sending at once costs one
// request instead of two for a blob the bucket lacks, and one request (a
// refused write) for a blob it has, but sends bytes it may not need: worth
// it up to 256 KiB, where the bytes cost about what a lookup's round trip
// does.
func lookFirst(size int64) bool { return size > 256<<10 }

// Put uploads exactly size bytes from r, hashing them on the way. On a
// mismatch, or a failure to read r, the upload is aborted (its context
// cancelled before it completes), so nothing becomes visible. A blob
// already in the bucket is success. A blob above 256 KiB is looked up
// first (then r is not read, and a copy of another size is an
// opm.ErrIntegrity error); a smaller one is sent at once.
func (b *Bucket) Put(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	_, err := b.Store(ctx, d, size, r, false)
	return err
}

// Store is Put that says whether it stored the blob (false: the bucket had
// it), looking even a small blob up first when lookup (a caller that
// expects the bucket to have it, and whose r costs a request to read).
func (b *Bucket) Store(ctx context.Context, d digest.Digest, size int64, r io.Reader, lookup bool) (stored bool, err error) {
	if err := validatePut(d, size); err != nil {
		return false, err
	}
	if lookup || lookFirst(size) {
		err := b.present(ctx, d, size)
		if !errors.Is(err, opm.ErrNotFound) {
			return false, err
		}
	}
	// The bytes are checked on their way: a mismatch, or a failure of r,
	// cancels the upload before it completes, so nothing becomes visible.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	v := newVerifier(io.NopCloser(io.LimitReader(counted(ctx, r), size+1)), d)
	v.size = size
	src := &abortOnError{r: v, abort: cancel}
	b.requests.Add(1)
	err = b.sdk.Upload(wctx, bucketKey(d), src, &blob.WriterOptions{
		ContentType: "application/octet-stream",
		IfNotExist:  true,
		BeforeWrite: b.boundGCSUpload,
		BufferSize:  partSize(size),
	})
	if src.err != nil {
		return false, src.err // the bytes' failure, not the upload's
	}
	switch {
	case err == nil:
		return true, nil
	case gcerrors.Code(err) == gcerrors.FailedPrecondition:
		// The bucket has it, from before or written meanwhile by another
		// writer (who checked its bytes against d, as this one did).
		return false, nil
	}
	// Concurrent uploads of one blob can also fail otherwise (Azure
	// refuses one of two block lists committed at once): the blob another
	// writer completed, hash-checked by it, is as good as ours.
	if b.present(ctx, d, size) == nil {
		return false, nil
	}
	return false, b.bucketError(d, "upload", 1, err)
}

// Requests counts the requests this bucket has sent: each try of a lookup,
// read, write or delete; a listing, an upload in parts, and the SDK's own
// retries of an upload count once.
func (b *Bucket) Requests() int64 { return b.requests.Load() }

// partSize is the part size of an upload of size bytes: the driver's
// default (8 MiB on S3, where an upload has at most 10,000 parts) unless
// that would need more than 9,000 parts, then the size in 9,000 parts,
// rounded up to a MiB: without it an S3 upload of more than about 78 GiB
// fails at its 10,001st part.
func partSize(size int64) int {
	const parts, mib = 9000, 1 << 20
	if size <= 8*mib*parts {
		return 0
	}
	return int((size/parts + mib) / mib * mib)
}

// abortOnError reads r and, on its first error other than io.EOF, calls
// abort (cancelling an upload, which then stores nothing) before returning
// it.
type abortOnError struct {
	r     io.Reader
	abort func()
	err   error
}

func (a *abortOnError) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF && a.err == nil {
		a.err = err
		a.abort()
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
		b.requests.Add(1)
		return b.b.Delete(ctx, bucketKey(d))
	})
	switch {
	case err == nil, n > 1 && gcerrors.Code(err) == gcerrors.NotFound:
		return nil
	}
	return b.bucketError(d, "delete", n, err)
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

// bucketError translates gocloud's error codes into opm's errors, in one
// line naming the bucket (see explain), saying how many tries op took when
// there was more than one.
func (b *Bucket) bucketError(d digest.Digest, op string, attempts int, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound && !missingBucket(err) {
		return opm.Errorf(opm.ErrNotFound, "blob %s is not in bucket %s", d, b.name)
	}
	if attempts > 1 {
		return fmt.Errorf("%w (%s of blob %s, failed after %d attempts)", b.explain(err), op, d, attempts)
	}
	return fmt.Errorf("%w (%s of blob %s)", b.explain(err), op, d)
}
