package cas

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// Copy puts the blob d of size bytes into dst unless dst has it, opening
// its source only once dst.Put starts reading (Put returns without reading
// when the blob is there already): a blob dst has costs one existence
// check and no read. dst verifies the bytes before they become visible.
// opened reports whether open was called; an error of open or of reading
// the source is returned as it is, not as dst's.
func Copy(ctx context.Context, dst Pusher, d digest.Digest, size int64, open func() (io.ReadCloser, error)) (opened bool, err error) {
	lr := &lazyReader{open: open}
	defer lr.Close()
	err = dst.Put(ctx, d, size, lr)
	if lr.err != nil {
		err = lr.err
	}
	return lr.rc != nil || lr.openErr != nil, err
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
