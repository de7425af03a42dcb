package registry

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/flock"
)

// TestUploadLeftovers: a new server removes at once the upload directories
// of servers that are gone (no one holds their owner lock), keeps those of
// live ones, and reaps its own idle sessions without waiting for a new one.
func TestUploadLeftovers(t *testing.T) {
	parent := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	dead := filepath.Join(parent, "serve-dead")
	if err := os.MkdirAll(dead, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, ownerLock), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "0123"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(parent, "serve-live")
	if err := os.MkdirAll(live, 0o755); err != nil {
		t.Fatal(err)
	}
	release, ok, err := flock.Try(filepath.Join(live, ownerLock), flock.Exclusive)
	if err != nil || !ok {
		t.Fatal(err)
	}
	defer release()
	u, err := newUploads(nil, parent, log)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the uploads of a server that is gone are still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the uploads of a live server were removed: %v", err)
	}
	up, err := u.Start(opm.Repository{Namespace: "a", Project: "b", Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	file := up.f.Name()
	up.Release()
	u.reap(time.Now().Add(uploadIdle + time.Minute))
	if len(u.m) != 0 {
		t.Error("an idle session was not reaped")
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the reaped session's file is still there: %v", err)
	}
}
