package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// The copy pipeline moves chunks of chunkSize bytes through three stages that
// run at the same time on different chunks: read, hash, write. At most
// numChunks buffers are in flight. Small chunks stay in the CPU caches between
// the stages: 256 KiB measured about twice as fast as 1 MiB or 4 MiB.
const (
	chunkSize = 256 << 10
	numChunks = 8
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

type chunk struct {
	buf *[]byte
	n   int
}

// pipe copies r to w and returns the sha256 digest and length of what it
// copied. Each chunk is hashed and then written from the same buffer, so the
// digest is of exactly the bytes handed to w, whatever r's source does
// meanwhile. Hashing (the slowest stage) runs alongside the read of the next
// chunk and the write of the previous one.
func pipe(ctx context.Context, w io.Writer, r io.Reader) (digest.Digest, int64, error) {
	g, ctx := errgroup.WithContext(ctx)
	free := make(chan *[]byte, numChunks)
	for range numChunks {
		free <- nil // taken from chunkPool on first use
	}
	toHash := make(chan chunk, numChunks)
	toWrite := make(chan chunk, numChunks)

	g.Go(func() error {
		defer close(toHash)
		for {
			var buf *[]byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if buf == nil {
				buf = chunkPool.Get().(*[]byte)
			}
			n, err := io.ReadFull(r, *buf)
			if n > 0 {
				toHash <- chunk{buf, n} // never blocks: numChunks buffers in all
			} else {
				free <- buf
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})

	h := sha256.New()
	var total int64
	g.Go(func() error {
		defer close(toWrite)
		for c := range toHash {
			h.Write((*c.buf)[:c.n])
			total += int64(c.n)
			toWrite <- c
		}
		return nil
	})

	g.Go(func() error {
		for c := range toWrite {
			if _, err := w.Write((*c.buf)[:c.n]); err != nil {
				return err
			}
			free <- c.buf
		}
		return nil
	})

	err := g.Wait()
	for range len(free) {
		if buf := <-free; buf != nil {
			chunkPool.Put(buf)
		}
	}
	if err != nil {
		return "", 0, err
	}
	return digest.NewDigest(digest.SHA256, h), total, nil
}
