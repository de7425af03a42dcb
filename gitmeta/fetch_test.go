package gitmeta

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBeginFetchLeftovers: an .idx without its .pack and a temporary pack
// unwritten for long are removed; a pack pair, another .pack and a fresh
// temporary pack (perhaps a git CLI fetch in progress) stay. A second
// fetch waits for the first to finish, and finish fsyncs only new packs.
func TestBeginFetchLeftovers(t *testing.T) {
	gitDir := t.TempDir()
	dir := filepath.Join(gitDir, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, age time.Duration) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o444); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	write("pack-aa.idx", time.Hour)
	write("pack-aa.pack", time.Hour)
	write("pack-bb.idx", 0) // its .pack was never renamed into place
	write("pack-cc.pack", 0)
	write("tmp_pack_old", time.Hour)
	write("tmp_pack_new", time.Minute)

	ctx := context.Background()
	finish, err := BeginFetch(ctx, gitDir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"pack-aa.idx": true, "pack-aa.pack": true, "pack-bb.idx": false,
		"pack-cc.pack": true, "tmp_pack_old": false, "tmp_pack_new": true,
	} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s: present %v, want %v", name, err == nil, want)
		}
	}
	// While this fetch runs, another waits.
	waited, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := BeginFetch(waited, gitDir); err == nil {
		t.Fatal("a second fetch began while the first had not finished")
	}
	write("pack-dd.idx", 0) // what this fetch wrote
	write("pack-dd.pack", 0)
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	finish, err = BeginFetch(ctx, gitDir)
	if err != nil {
		t.Fatalf("after finish: %v", err)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pack-dd.idx")); err != nil {
		t.Errorf("a finished fetch's .idx was removed: %v", err)
	}
}
