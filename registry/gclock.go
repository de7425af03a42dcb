package registry

import (
	"context"

	"github.com/openpm/opm/internal/flock"
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

// HoldForWrite takes the home's gc lock shared (see the comment above), waiting
// while a gc removes blobs. release must be called once the write is
// committed or abandoned.
func HoldForWrite(ctx context.Context, home string) (release func(), err error) {
	return lockHome(ctx, home, flock.Shared)
}

// holdForGC takes the home's gc lock exclusively, waiting for writers in
// progress to finish.
func holdForGC(ctx context.Context, home string) (release func(), err error) {
	return lockHome(ctx, home, flock.Exclusive)
}

func lockHome(ctx context.Context, home string, how int) (func(), error) {
	return flock.Lock(ctx, PathsOf(home).GCLock(), "gc lock", how)
}
