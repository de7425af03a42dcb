package gitmeta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// A pack ends with its checksum, and its .idx with the pack's checksum
	// and its own: these pairs belong together.
	sum := bytes.Repeat([]byte{0xab}, 20)
	contents := map[string][]byte{
		"pack-aa.pack": sum, "pack-aa.idx": append(append([]byte{}, sum...), make([]byte, 20)...),
		"pack-dd.pack": sum, "pack-dd.idx": append(append([]byte{}, sum...), make([]byte, 20)...),
	}
	write := func(name string, age time.Duration) {
		p := filepath.Join(dir, name)
		data, ok := contents[name]
		if !ok {
			data = []byte("x")
		}
		if err := os.WriteFile(p, data, 0o444); err != nil {
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
	write("pack-aa.idx.lock", 0) // a re-indexing killed midway

	ctx := context.Background()
	finish, err := BeginFetch(ctx, gitDir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"pack-aa.idx": true, "pack-aa.pack": true, "pack-bb.idx": false,
		"pack-cc.pack": true, "tmp_pack_old": false, "tmp_pack_new": true, "pack-aa.idx.lock": false,
	} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s: present %v, want %v", name, err == nil, want)
		}
	}
	// While this fetch runs, another waits.
	waited, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := BeginFetch(waited, gitDir); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second fetch while the first had not finished: %v, want it to wait (context.DeadlineExceeded)", err)
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

// TestBeginFetchMendsIndex: an .idx cut short beside its pack (what a
// fetch killed by the old code, or a power loss, leaves) is written again
// from the pack, and git reads the objects; an .idx that belongs to its
// pack is left alone.
func TestBeginFetchMendsIndex(t *testing.T) {
	gitDir := t.TempDir()
	git := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", gitDir}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	git("", "init", "-q", "--bare")
	var objs []string
	for i := range 50 {
		objs = append(objs, git(fmt.Sprintf("blob %d\n", i), "hash-object", "-w", "--stdin"))
	}
	sum := git(strings.Join(objs, "\n")+"\n", "pack-objects", "-q", "objects/pack/pack")
	git("", "prune-packed")
	idx := filepath.Join(gitDir, "objects", "pack", "pack-"+sum+".idx")
	good, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		finish, err := BeginFetch(context.Background(), gitDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		for i, o := range objs {
			if got := git("", "cat-file", "-p", o); got != fmt.Sprintf("blob %d", i) {
				t.Fatalf("object %s reads %q", o, got)
			}
		}
	}
	before, _ := os.Stat(idx)
	check()
	if after, _ := os.Stat(idx); !os.SameFile(before, after) {
		t.Error("an .idx that belongs to its pack was written again")
	}
	if err := os.WriteFile(idx, good[:len(good)/2], 0o444); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", gitDir, "cat-file", "-p", objs[0]).Run(); err == nil {
		t.Fatal("git reads through a cut .idx: the test proves nothing")
	}
	check()
}
