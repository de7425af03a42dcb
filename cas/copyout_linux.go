package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// copyChunk is how much one copy_file_range call moves before the hasher
// may read it back.
const copyChunk = 8 << 20

// copyFileVerified copies src to dst inside the kernel (copy_file_range,
// what cp does) while a second goroutine reads back and hashes each chunk
// of dst once it is written: the digest is of the bytes in the output
// file, and the copy and the hash run on two cores at once. dst must be
// open for reading and writing. ok is false when the kernel cannot copy
// between these files; nothing was written then.
func copyFileVerified(ctx context.Context, dst, src *os.File, size int64) (d digest.Digest, n int64, ok bool, err error) {
	g, ctx := errgroup.WithContext(ctx)
	done := make(chan int64, size/copyChunk+2) // end offsets of copied chunks
	var first error
	firstDone := make(chan struct{})
	signal := sync.OnceFunc(func() { close(firstDone) }) // on every way out, or the caller waits forever
	g.Go(func() error {
		defer close(done)
		defer signal()
		var off int64
		for off < size {
			if err := ctx.Err(); err != nil {
				return err
			}
			roff, woff := off, off
			m, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(copyChunk, size-off)), 0)
			if off == 0 && first == nil {
				first = err
				signal()
			}
			if err != nil {
				return err
			}
			if m == 0 {
				return io.ErrUnexpectedEOF // the source shrank
			}
			off += int64(m)
			progressed(ctx, int64(m))
			done <- off
		}
		return nil
	})
	<-firstDone
	if first != nil && (errors.Is(first, unix.EXDEV) || errors.Is(first, unix.ENOSYS) ||
		errors.Is(first, unix.EINVAL) || errors.Is(first, unix.EOPNOTSUPP)) {
		g.Wait()
		return "", 0, false, nil
	}
	h := sha256.New()
	g.Go(func() error {
		buf := make([]byte, 1<<20)
		var off int64
		for end := range done {
			for off < end {
				m, err := dst.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
				if m > 0 {
					h.Write(buf[:m])
					off += int64(m)
				}
				if err != nil && !(errors.Is(err, io.EOF) && off == end) {
					return err
				}
			}
		}
		n = off
		return nil
	})
	if err := g.Wait(); err != nil {
		return "", 0, true, err
	}
	return digest.NewDigest(digest.SHA256, h), n, true, nil
}
