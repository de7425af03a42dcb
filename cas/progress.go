package cas

import (
	"context"
	"io"
)

// Byte progress: a command that draws a progress bar puts its counter in the
// context (WithProgress), and the stores' copy loops add to it as bytes move
// — read from a file being stored, downloaded from a bucket, copied between
// stores — so that a bar moves while one big blob does, not once per blob.
// A retried read counts again: it is a bar, not an account.

type progressKey struct{}

// WithProgress returns ctx with add as its byte counter; add nil is ctx.
func WithProgress(ctx context.Context, add func(int64)) context.Context {
	if add == nil {
		return ctx
	}
	return context.WithValue(ctx, progressKey{}, add)
}

// progressed adds n to ctx's counter, if it has one.
func progressed(ctx context.Context, n int64) {
	if add, ok := ctx.Value(progressKey{}).(func(int64)); ok && n > 0 {
		add(n)
	}
}

// counted is r, adding what is read from it to ctx's counter.
func counted(ctx context.Context, r io.Reader) io.Reader {
	add, ok := ctx.Value(progressKey{}).(func(int64))
	if !ok {
		return r
	}
	return &countingReader{r: r, add: add}
}

type countingReader struct {
	r   io.Reader
	add func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}
