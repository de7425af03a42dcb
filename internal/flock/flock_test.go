package flock

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// flock(2) locks belong to an open file, so two opens in one process
// conflict as two processes would.
func TestLockConflicts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	if Held(path, Exclusive) {
		t.Fatal("a missing file is held")
	}
	release, ok, err := Try(path, Shared)
	if err != nil || !ok {
		t.Fatalf("Try shared on a free lock: %v %v", ok, err)
	}
	if Held(path, Shared) {
		t.Error("a shared lock conflicts with a shared one")
	}
	if !Held(path, Exclusive) {
		t.Error("a shared lock does not conflict with an exclusive one")
	}
	if _, ok, err := Try(path, Exclusive); ok || err != nil {
		t.Errorf("Try exclusive under a shared holder: %v %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, path, "test lock", Exclusive); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock exclusive under a shared holder: %v, want the context's end", err)
	}
	release()
	if Held(path, Exclusive) {
		t.Error("still held once released")
	}
	release, err = Lock(context.Background(), path, "test lock", Exclusive)
	if err != nil {
		t.Fatal(err)
	}
	release()
}
