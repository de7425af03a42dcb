package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Writers and gc exclude each other through <home>/gc.lock. A writer (a
// push, a mirror copy, a manifest put over HTTP) holds it shared from
// before it looks for or stores its first blob until its commit is
// published; gc holds it exclusively from its last reading of the heads
// until its last removal. So within one home, gc never removes a blob that a
// writer found already stored and is about to name: either the writer's
// commit is visible when gc reads the heads, or the writer starts after gc
// is done and stores the blob again. Writers on other machines sharing a
// bucket are kept safe by gc's grace and keep periods only (RELIABILITY.md).
const gcLockName = "gc.lock"

// HoldForWrite takes the home's gc lock shared (see gcLockName), waiting
// while a gc removes blobs. release must be called once the write is
// committed or abandoned.
func HoldForWrite(ctx context.Context, home string) (release func(), err error) {
	return lockHome(ctx, home, syscall.LOCK_SH)
}

// holdForGC takes the home's gc lock exclusively, waiting for writers in
// progress to finish.
func holdForGC(ctx context.Context, home string) (release func(), err error) {
	return lockHome(ctx, home, syscall.LOCK_EX)
}

func lockHome(ctx context.Context, home string, how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(home, gcLockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("gc lock: %w", err)
	}
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("gc lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}
