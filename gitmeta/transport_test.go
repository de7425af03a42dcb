package gitmeta

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestTransportIgnoresLockFiles: an empty <ref>.lock — a writer of main
// between creating its lock and writing it, or one killed there, or an
// interrupted SetTracking — does not fail a fetch or a push (go-git read
// every file under refs/ as a ref: "ref file is empty"), and the tracking
// ref is written again.
func TestTransportIgnoresLockFiles(t *testing.T) {
	ctx := context.Background()
	origin := newRepo(t)
	c1 := commit(t, origin, "one", set("a/b/c/tags/v1.json", "1"))
	home := newRepo(t)
	for _, lock := range []string{"refs/heads/main.lock", "refs/remotes/origin/main.lock"} {
		p := filepath.Join(home.Path(), lock)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := home.Fetch(ctx, origin.Path(), TrackingRef("origin"))
	if err != nil || got != c1 {
		t.Fatalf("fetch with lock files beside the refs: %v %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(home.Path(), "refs/remotes/origin/main.lock")); !os.IsNotExist(err) {
		t.Errorf("the tracking ref's leftover lock is still there: %v", err)
	}
	if err := os.Remove(filepath.Join(home.Path(), "refs/heads/main.lock")); err != nil {
		t.Fatal(err)
	}
	if err := home.SetHead(ctx, ZeroHash, c1); err != nil {
		t.Fatal(err)
	}
	c2 := commit(t, home, "two", set("a/b/c/tags/v2.json", "2"))
	if err := os.WriteFile(filepath.Join(home.Path(), "refs/heads/other.lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := home.Push(ctx, origin.Path(), c1, c2, false); err != nil {
		t.Fatalf("push with lock files beside the refs: %v", err)
	}
	if err := home.SetTracking(ctx, "origin", c2); err != nil {
		t.Fatal(err)
	}
	if h, err := readRef(home.Path(), TrackingRef("origin")); err != nil || h != c2 {
		t.Fatalf("tracking ref %v %v, want %s", h, err, c2)
	}
}
