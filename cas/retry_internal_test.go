package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"gocloud.dev/gcerrors"

	"github.com/openpm/opm"
)

func TestTransient(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBucket(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, missing := b.b.Attributes(ctx, "nope") // a gocloud NotFound
	if gcerrors.Code(missing) != gcerrors.NotFound {
		t.Fatalf("setup: %v", missing)
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{missing, false},
		{fmt.Errorf("x: %w", opm.ErrNotFound), false},
		{fmt.Errorf("x: %w", opm.ErrIntegrity), false},
		{context.Canceled, false},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{errors.New("something odd"), true}, // gcerrors.Unknown
		{context.DeadlineExceeded, true},    // a request's own timeout; the caller checks its context
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetryWait(t *testing.T) {
	p := Retry{Attempts: 5, Base: 50 * time.Millisecond, Max: 2 * time.Second}
	for attempt, max := range map[int]time.Duration{1: 50 * time.Millisecond, 2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 10: 2 * time.Second} {
		for range 100 {
			if w := p.wait(attempt); w < max/2 || w > max {
				t.Fatalf("wait after attempt %d: %v, want between %v and %v", attempt, w, max/2, max)
			}
		}
	}
	uncapped := Retry{Attempts: 5, Base: time.Millisecond}
	if w := uncapped.wait(4); w < 4*time.Millisecond || w > 8*time.Millisecond {
		t.Fatalf("uncapped wait after attempt 4: %v, want 4ms to 8ms", w)
	}
	if w := (Retry{Attempts: 5}).wait(3); w != 0 {
		t.Fatalf("wait with no base: %v", w)
	}
}

// TestDefaultRetryEnv: the environment overrides the default policy; a
// malformed value is ignored.
func TestDefaultRetryEnv(t *testing.T) {
	t.Setenv("OPM_RETRY_ATTEMPTS", "7")
	t.Setenv("OPM_RETRY_BASE", "1ms")
	t.Setenv("OPM_RETRY_MAX", "soon")
	if got, want := DefaultRetry(), (Retry{Attempts: 7, Base: time.Millisecond, Max: DefaultRetryMax}); got != want {
		t.Fatalf("DefaultRetry: %+v, want %+v", got, want)
	}
	t.Setenv("OPM_RETRY_ATTEMPTS", "0")
	if got := DefaultRetry().Attempts; got != DefaultRetryAttempts {
		t.Fatalf("attempts with OPM_RETRY_ATTEMPTS=0: %d, want %d", got, DefaultRetryAttempts)
	}
}

func TestPartSize(t *testing.T) {
	for _, size := range []int64{0, 1 << 30, 8 << 20 * 9000, 8<<20*9000 + 1, 100 << 30, 5 << 40} {
		ps := int64(partSize(size))
		if ps == 0 {
			ps = 8 << 20 // the S3 transfer manager's default
		}
		if parts := (size + ps - 1) / ps; parts > 9000 || ps%(1<<20) != 0 {
			t.Errorf("partSize(%d) = %d: %d parts; want at most 9000 parts of whole MiB", size, ps, parts)
		}
	}
}
