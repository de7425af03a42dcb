package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
)

// Cache serves a remote Store (the registry's bucket) through a Local store.
// A blob missing locally is downloaded once, however many callers ask for it
// at the same time, verified, stored, and then served from the local file.
// Bytes that fail verification are never stored: the callers waiting for
// that download get an opm.ErrIntegrity error and a later call tries again.
//
// A download that fails transiently (the remote cannot be reached, its body
// is cut short) or whose bytes fail verification is started again from the
// beginning, as Retry says; the staged bytes of a failed try are discarded.
type Cache struct {
	local  *Local
	remote Store
	// Retry is the policy for downloads: the bucket's when remote is a
	// *Bucket, else NoRetry. Change it before the cache is used.
	Retry Retry

	mu       sync.Mutex
	inflight map[digest.Digest]*download
	partials map[digest.Digest]*Partial // blobs being read chunk by chunk (partial.go)

	// The read-ahead of partial blobs: cancelled and waited for by
	// StopPartials.
	bg        context.Context
	stopBg    context.CancelFunc
	bgWG      sync.WaitGroup
	bgMu      sync.Mutex // a read-ahead starts only while !bgStopped
	bgStopped bool
}

// download is one fetch in progress; done is closed when err is set.
type download struct {
	done chan struct{}
	err  error
}

// wait waits for another's download: its error, or nil when the caller
// should look again (it is done, or was given up by its fetcher, whose
// context ended: then the caller fetches it itself).
func (dl *download) wait(ctx context.Context) error {
	select {
	case <-dl.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if dl.err != nil && !errors.Is(dl.err, context.Canceled) && !errors.Is(dl.err, context.DeadlineExceeded) {
		return dl.err
	}
	return nil
}

var _ Store = (*Cache)(nil)

// NewCache returns a Cache of remote in local. Close closes both.
func NewCache(local *Local, remote Store) *Cache {
	p := NoRetry
	if b, ok := remote.(*Bucket); ok {
		p = b.Retry
	}
	bg, stop := context.WithCancel(context.Background())
	return &Cache{local: local, remote: remote, Retry: p, inflight: make(map[digest.Digest]*download), bg: bg, stopBg: stop}
}

// Local returns the local store the cache fills.
func (c *Cache) Local() *Local { return c.local }

// Open ensures the blob is local, then opens the local file.
func (c *Cache) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if err := c.Fetch(ctx, d); err != nil {
		return nil, err
	}
	return c.local.Open(ctx, d)
}

// OpenRange reads the range from the local store when the blob is there, and
// otherwise from the remote, as it is and without storing it: the whole
// blob comes in through Fetch.
func (c *Cache) OpenRange(ctx context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	if err := validateRange(d, offset); err != nil {
		return nil, err
	}
	if wholeRange(offset, length) {
		return c.Open(ctx, d)
	}
	rc, err := c.local.OpenRange(ctx, d, offset, length)
	if !errors.Is(err, opm.ErrNotFound) {
		return rc, err
	}
	return c.remote.OpenRange(ctx, d, offset, length)
}

// Fetch ensures the blob is in the local store, downloading it if needed.
func (c *Cache) Fetch(ctx context.Context, d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	for {
		if c.local.Has(d) {
			return nil
		}
		c.mu.Lock()
		dl, busy := c.inflight[d]
		if !busy {
			dl = &download{done: make(chan struct{})}
			c.inflight[d] = dl
		}
		c.mu.Unlock()

		if busy {
			if err := dl.wait(ctx); err != nil {
				return err
			}
			continue // check again; a download given up by its caller is retried
		}

		dl.err = c.download(ctx, d)
		c.mu.Lock()
		delete(c.inflight, d)
		c.mu.Unlock()
		close(dl.done)
		return dl.err
	}
}

// download copies the blob from remote into the local store, trying again
// as c.Retry allows. The local store verifies the digest before the blob
// becomes visible.
func (c *Cache) download(ctx context.Context, d digest.Digest) error {
	if idx := c.local.index(); idx != nil {
		if err := idx.MarkFetching(d); err != nil {
			slog.Warn("blob index: mark fetching failed", "digest", d, "err", err)
		}
	}
	n, err := c.Retry.do(ctx, d, "fetch", retryableFetch, func() error { return c.fetchRemote(ctx, d) })
	if err != nil {
		c.local.forget(d)
		if errors.Is(err, opm.ErrIntegrity) {
			slog.Warn("blob cache: remote blob failed verification", "digest", d, "attempts", n, "err", err)
		}
		if n > 1 { // the cause names the blob
			err = fmt.Errorf("fetch from bucket failed after %d attempts: %w", n, err)
		}
	}
	return err
}

// retryableFetch: bytes that failed verification, or a transient failure
// of the remote (not of the local store, not a blob the remote lacks).
func retryableFetch(err error) bool {
	var re *remoteError
	return errors.Is(err, opm.ErrIntegrity) || errors.As(err, &re) && transient(re.err)
}

// remoteError is a failure of the remote, opening the blob or reading it,
// as opposed to one of the local store.
type remoteError struct{ err error }

func (e *remoteError) Error() string { return e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

// errRemoteRead stands in, for the local store, for an error of the remote
// reader, so that the store does not take a body cut short (an
// io.ErrUnexpectedEOF) for its end; fetchRemote returns the real one.
var errRemoteRead = errors.New("reading the remote failed")

// remoteReader keeps the first error of the remote's reader.
type remoteReader struct {
	r   io.Reader
	err error
}

func (r *remoteReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
		return n, errRemoteRead
	}
	return n, err
}

// fetchRemote makes one try: open, stage while verifying, commit.
func (c *Cache) fetchRemote(ctx context.Context, d digest.Digest) error {
	rc, err := c.openRemote(ctx, d)
	if err != nil {
		return &remoteError{err}
	}
	defer rc.Close()
	rr := &remoteReader{r: rc}
	s, err := c.local.stage(ctx, rr, d, -1)
	switch {
	case errors.Is(rr.err, opm.ErrIntegrity): // the verifier's, naming the blob
		return &remoteError{rr.err}
	case rr.err != nil:
		return &remoteError{fmt.Errorf("blob %s: read: %w", d, rr.err)}
	}
	if err != nil {
		return err
	}
	return c.local.commit(s)
}

// openRemote opens the blob at the remote with a single try when the remote
// retries by itself (a Bucket): download retries the whole fetch instead.
func (c *Cache) openRemote(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if b, ok := c.remote.(interface {
		openOnce(context.Context, digest.Digest) (io.ReadCloser, error)
	}); ok {
		return b.openOnce(ctx, d)
	}
	return c.remote.Open(ctx, d)
}

// Stat asks the local store, then the remote.
func (c *Cache) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if n, err := c.local.Stat(ctx, d); !errors.Is(err, opm.ErrNotFound) {
		return n, err
	}
	return c.remote.Stat(ctx, d)
}

// Put stores the blob in the remote, then in the local store. The bytes are
// read once into a verified local temporary file, uploaded from it, and the
// file becomes visible locally only after the remote has the blob, so a blob
// found locally is always in the registry's bucket too.
func (c *Cache) Put(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	if err := validatePut(d, size); err != nil {
		return err
	}
	if n, err := c.local.Stat(ctx, d); err == nil {
		if err := checkSize(d, size, n); err != nil {
			return err
		}
		f, err := c.local.Open(ctx, d)
		if err != nil {
			return err
		}
		defer f.Close()
		return c.remote.Put(ctx, d, size, f)
	}
	s, err := c.local.stage(ctx, r, d, size)
	if err != nil {
		return err
	}
	if err := c.remote.Put(ctx, d, size, io.NewSectionReader(s.f, 0, s.n)); err != nil {
		s.discard()
		return err
	}
	return c.local.commit(s)
}

// Delete removes the blob from the remote and the local store. It fails with
// opm.ErrNotFound only if neither had it.
func (c *Cache) Delete(ctx context.Context, d digest.Digest) error {
	rerr := c.remote.Delete(ctx, d)
	lerr := c.local.Delete(ctx, d)
	switch {
	case rerr != nil && !errors.Is(rerr, opm.ErrNotFound):
		return rerr
	case lerr != nil && !errors.Is(lerr, opm.ErrNotFound):
		return lerr
	case rerr != nil && lerr != nil:
		return opm.Errorf(opm.ErrNotFound, "blob %s not found", d)
	}
	return nil
}

// Close stops the partial blobs (StopPartials), then closes the remote and
// the local store.
func (c *Cache) Close() error {
	c.StopPartials()
	return errors.Join(c.remote.Close(), c.local.Close())
}
