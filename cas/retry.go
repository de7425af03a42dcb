package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/opencontainers/go-digest"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"

	"github.com/openpm/opm"
)

// Retry is a bounded retry policy: at most Attempts tries, waiting Base
// after the first failure, twice as long after each next one up to Max, each
// wait jittered (between half and all of it). Only transient failures are
// tried again (see transient); a cancelled context stops at once.
//
// A Bucket retries its calls with its Retry, and a Cache retries a whole
// download (open, read, verify) with the Retry of its bucket, so a request
// is sent at most Attempts times per call. Under an s3:// bucket the S3
// SDK does not retry by itself, but for uploads, which it retries with the
// same Attempts and waits (see OpenBucket).
type Retry struct {
	Attempts int           // tries in all, the first one included; < 1 means 1
	Base     time.Duration // wait after the first failure
	Max      time.Duration // longest wait
}

// Default retry policy, overridden by the environment (for tests and
// operators): OPM_RETRY_ATTEMPTS (a count), OPM_RETRY_BASE and OPM_RETRY_MAX
// (Go durations such as 1ms or 2s).
const (
	DefaultRetryAttempts = 5
	DefaultRetryBase     = 50 * time.Millisecond
	DefaultRetryMax      = 2 * time.Second
)

// DefaultRetry returns the default policy, with the environment's
// overrides. A malformed value is logged and ignored.
func DefaultRetry() Retry {
	p := Retry{Attempts: DefaultRetryAttempts, Base: DefaultRetryBase, Max: DefaultRetryMax}
	if v := os.Getenv("OPM_RETRY_ATTEMPTS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 {
			p.Attempts = n
		} else {
			slog.Warn("ignoring OPM_RETRY_ATTEMPTS: want a count of at least 1", "value", v)
		}
	}
	envDuration("OPM_RETRY_BASE", &p.Base)
	envDuration("OPM_RETRY_MAX", &p.Max)
	return p
}

// envDuration sets *d from the environment variable name if it holds a
// duration of at least 0.
func envDuration(name string, d *time.Duration) {
	v := os.Getenv(name)
	if v == "" {
		return
	}
	if x, err := time.ParseDuration(v); err == nil && x >= 0 {
		*d = x
	} else {
		slog.Warn("ignoring "+name+": want a duration such as 50ms or 2s", "value", v)
	}
}

// NoRetry tries once.
var NoRetry = Retry{Attempts: 1}

// wait returns the jittered pause after the attempt-th failure (1-based).
// A Max of 0 puts no cap on it.
func (p Retry) wait(attempt int) time.Duration {
	d := p.Base
	for i := 1; i < attempt && i < 32 && (p.Max <= 0 || d < p.Max); i++ {
		d *= 2
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// do runs fn until it succeeds, fails with an error retryable does not
// accept, the context is done, or p.Attempts tries have failed. It returns
// fn's last error (with the context's, if that ended the tries) and how many
// tries were made. Each retry is logged with the digest, the operation and
// the cause.
func (p Retry) do(ctx context.Context, d digest.Digest, op string, retryable func(error) bool, fn func() error) (int, error) {
	attempts := max(p.Attempts, 1)
	for attempt := 1; ; attempt++ {
		err := fn()
		switch {
		case err == nil || attempt >= attempts || !retryable(err):
			return attempt, err
		case ctx.Err() != nil:
			return attempt, givenUp(ctx, err)
		}
		wait := p.wait(attempt)
		slog.Warn("bucket: retrying", "op", op, "digest", d, "attempt", attempt, "of", attempts, "wait", wait, "err", err.Error()) // a string: slog would print gocloud's stack frames
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, givenUp(ctx, err)
		case <-t.C:
		}
	}
}

// givenUp is err of a try cut short by the end of ctx, or after which ctx
// ended: it matches ctx.Err() with errors.Is, so that callers (and the
// other waiters of a Cache download) see that the caller gave up.
func givenUp(ctx context.Context, err error) error {
	if errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
}

// transient reports whether an error of a bucket call may go away if the
// call is made again: a network error, a connection cut or reset, a body
// cut short, an HTTP 5xx (or 429, 408) from the server, or one of gocloud's
// codes Unknown, Internal, ResourceExhausted and DeadlineExceeded. Not
// transient: absent (NotFound), refused (InvalidArgument, PermissionDenied,
// FailedPrecondition, …), and the caller's own cancellation (the caller
// checks its context).
func transient(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, context.Canceled),
		errors.Is(err, opm.ErrNotFound),
		errors.Is(err, opm.ErrInvalid),
		errors.Is(err, opm.ErrIntegrity):
		return false
	}
	code := gcerrors.Code(err)
	switch code {
	case gcerrors.NotFound, gcerrors.AlreadyExists, gcerrors.InvalidArgument, gcerrors.PermissionDenied,
		gcerrors.FailedPrecondition, gcerrors.Unimplemented, gcerrors.Canceled:
		return false
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT):
		return true
	}
	var status interface{ HTTPStatusCode() int } // the AWS SDK's response errors
	if errors.As(err, &status) {
		c := status.HTTPStatusCode()
		return c >= 500 || c == 429 || c == 408
	}
	// Network errors. (Not any net.Error: a syscall.Errno is one too.)
	var opErr *net.OpError
	var urlErr *url.Error
	if errors.As(err, &opErr) || errors.As(err, &urlErr) {
		return true
	}
	switch code {
	case gcerrors.Unknown, gcerrors.Internal, gcerrors.ResourceExhausted, gcerrors.DeadlineExceeded:
		return true
	}
	return false
}

// rangeTransient is transient for a ranged read: a range the server
// refuses as past the end of the blob (HTTP 416, which gocloud leaves
// Unknown and some SDKs report as a 4xx, others as "InvalidRange") will not
// go away on a retry.
func rangeTransient(err error) bool {
	return transient(err) && !rangeRefused(err)
}

// rangeRefused reports an HTTP 416 from any of the cloud SDKs.
func rangeRefused(err error) bool {
	var status interface{ HTTPStatusCode() int } // AWS
	if errors.As(err, &status) && status.HTTPStatusCode() == 416 {
		return true
	}
	var gcs *googleapi.Error
	if errors.As(err, &gcs) && gcs.Code == 416 {
		return true
	}
	var az *azcore.ResponseError
	if errors.As(err, &az) && az.StatusCode == 416 {
		return true
	}
	return false
}
