package cas

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// A Storer is a Pusher that says whether Put stored the blob or found it
// there already.
type Storer interface {
	// Store is Put, looking even a small blob up first if lookup (see
	// Bucket.Store).
	Store(ctx context.Context, d digest.Digest, size int64, r io.Reader, lookup bool) (stored bool, err error)
}

// Copied says what a Copy did.
type Copied struct {
	// Opened: the source was opened (its error, if any, is Copy's error).
	Opened bool
	// Stored: dst lacked the blob and has it now.
	Stored bool
}

// Copy puts the blob d of size bytes into dst unless dst has it, opening
// its source only once dst starts reading: a blob dst looks up and has
// costs the lookup and no read (lookup: look even a small blob up, see
// Bucket.Store). dst verifies the bytes before they become visible. An
// error of open or of reading the source is returned as it is, not as
// dst's.
func Copy(ctx context.Context, dst Storer, d digest.Digest, size int64, lookup bool, open func() (io.ReadCloser, error)) (Copied, error) {
	lr := &lazyReader{open: open}
	defer lr.Close()
	var c Copied
	var err error
	c.Stored, err = dst.Store(ctx, d, size, lr, lookup) // the store counts (progress.go)
	if lr.err != nil {
		err = lr.err
	}
	c.Opened = lr.rc != nil || lr.openErr != nil
	return c, err
}

// lazyReader opens its source on the first Read and remembers the source's
// error.
type lazyReader struct {
	open    func() (io.ReadCloser, error)
	rc      io.ReadCloser
	openErr error
	err     error // the source's, from open or Read (not io.EOF)
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.rc == nil {
		if l.openErr == nil {
			l.rc, l.openErr = l.open()
		}
		if l.openErr != nil {
			l.err = l.openErr
			return 0, l.openErr
		}
	}
	n, err := l.rc.Read(p)
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

func (l *lazyReader) Close() error {
	if l.rc != nil {
		return l.rc.Close()
	}
	return nil
}
