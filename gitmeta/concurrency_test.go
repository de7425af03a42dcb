package gitmeta

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/openpm/opm"
)

// checkLinear checks that main is a chain of n commits, each with exactly
// one parent but the first, and that every path in paths is in its tree.
func checkLinear(t *testing.T, r *Repo, n int, paths []string) {
	t.Helper()
	entries, err := r.Log(context.Background(), plumbing.ZeroHash, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Errorf("%d commits, want %d", len(entries), n)
	}
	for i, e := range entries {
		if i+1 < len(entries) && e.Parent != entries[i+1].Commit {
			t.Fatalf("commit %s: parent %s, want %s", e.Commit, e.Parent, entries[i+1].Commit)
		}
	}
	if got := git(t, r.Path(), "rev-list", "--count", "main"); got != strconv.Itoa(n) {
		t.Errorf("git rev-list --count = %s, want %d", got, n)
	}
	if got := git(t, r.Path(), "rev-list", "--min-parents=2", "main"); got != "" {
		t.Errorf("merge commits: %s", got)
	}
	s := snapshot(t, r)
	for _, p := range paths {
		if _, err := s.Stat(p); err != nil {
			t.Errorf("lost update: %v", err)
		}
	}
	fsck(t, r)
}

// TestConcurrentGoroutines runs 8 goroutines × 25 Updates through two handles
// on one repository directory, so that they race on the ref lock as well as
// queue on each handle.
func TestConcurrentGoroutines(t *testing.T) {
	r1 := newRepo(t)
	r2, err := Open(r1.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	const goroutines, updates = 8, 25
	var wg sync.WaitGroup
	var paths []string
	for g := range goroutines {
		r := []*Repo{r1, r2}[g%2]
		for i := range updates {
			paths = append(paths, fmt.Sprintf("g%d/u%02d.json", g, i))
		}
		wg.Go(func() {
			for i := range updates {
				path := fmt.Sprintf("g%d/u%02d.json", g, i)
				_, committed, err := r.Update(context.Background(), tester, func(s *Snapshot) ([]Change, Message, error) {
					return []Change{set(path, path)}, Message{Subject: "set " + path}, nil
				})
				if err != nil || !committed {
					t.Errorf("%s: %v, %v", path, committed, err)
				}
			}
		})
	}
	wg.Wait()
	checkLinear(t, r1, goroutines*updates, paths)
}

const helperEnv = "GITMETA_HELPER" // "<repo>,<id>,<updates>"

// TestHelperProcess is not a test: TestConcurrentProcesses runs the test
// binary with it to update a repository from another process.
func TestHelperProcess(t *testing.T) {
	args := strings.Split(os.Getenv(helperEnv), ",")
	if len(args) != 3 {
		t.Skip("helper process for TestConcurrentProcesses")
	}
	n, _ := strconv.Atoi(args[2])
	r, err := Open(args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	calls := 0
	for i := range n {
		path := fmt.Sprintf("p%s/u%02d.json", args[1], i)
		_, _, err := r.Update(context.Background(), tester, func(*Snapshot) ([]Change, Message, error) {
			calls++
			return []Change{set(path, path)}, Message{Subject: "set " + path}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("calls=%d\n", calls)
}

func TestConcurrentProcesses(t *testing.T) {
	r := newRepo(t)
	const procs, updates = 4, 10
	var wg sync.WaitGroup
	var paths []string
	var retries atomic.Int64
	for p := range procs {
		for i := range updates {
			paths = append(paths, fmt.Sprintf("p%d/u%02d.json", p, i))
		}
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", helperEnv, r.Path(), p, updates))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("process %d: %v\n%s", p, err, out)
				return
			}
			var calls int
			if i := strings.Index(string(out), "calls="); i >= 0 {
				fmt.Sscanf(string(out[i:]), "calls=%d", &calls)
			}
			retries.Add(int64(calls - updates))
		})
	}
	wg.Wait()
	t.Logf("%d Updates rebuilt after losing the race to another process", retries.Load())
	checkLinear(t, r, procs*updates, paths)
}

// TestConflictGivesUp: when main moves under an Update and fn, called again,
// refuses, main keeps the other writer's commit and nothing is left behind.
func TestConflictGivesUp(t *testing.T) {
	r := newRepo(t)
	other, err := Open(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	commit(t, r, "init", set("x", "0"))
	var theirs plumbing.Hash
	calls := 0
	got, committed, err := r.Update(context.Background(), tester, func(s *Snapshot) ([]Change, Message, error) {
		calls++
		if calls == 1 {
			theirs = commit(t, other, "theirs", set("tag.json", "theirs"))
			return []Change{set("tag.json", "ours")}, Message{Subject: "ours"}, nil
		}
		if s.Commit() != theirs {
			t.Errorf("retry sees %s, want the new head %s", s.Commit(), theirs)
		}
		if _, err := s.Stat("tag.json"); err == nil {
			return nil, Message{}, fmt.Errorf("tag.json changed concurrently: %w", opm.ErrConflict)
		}
		return []Change{set("tag.json", "ours")}, Message{Subject: "ours"}, nil
	})
	if !errors.Is(err, opm.ErrConflict) || committed || calls != 2 {
		t.Fatalf("Update = %s, %v, %v after %d calls; want ErrConflict after 2", got, committed, err, calls)
	}
	if head, _ := r.Head(); head != theirs {
		t.Errorf("head %s, want theirs %s", head, theirs)
	}
	if got := readString(t, snapshot(t, r), "tag.json"); got != "theirs" {
		t.Errorf("tag.json = %q", got)
	}
	if _, err := os.Stat(filepath.Join(r.Path(), "refs/heads/main.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
	fsck(t, r)
}

func TestLockFile(t *testing.T) {
	r := newRepo(t)
	h := commit(t, r, "init", set("x", "0"))
	lock := filepath.Join(r.Path(), "refs/heads/main.lock")

	// A live writer's lock is waited for; the context ends the wait and the
	// lock is left alone.
	if err := os.WriteFile(lock, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, committed, err := r.Update(ctx, tester, func(*Snapshot) ([]Change, Message, error) {
		return []Change{set("x", "1")}, Message{Subject: "blocked"}, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) || committed {
		t.Errorf("Update under a held lock = %v, %v; want DeadlineExceeded", committed, err)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("another writer's lock was removed: %v", err)
	}
	if head, _ := r.Head(); head != h {
		t.Errorf("head moved to %s", head)
	}
	// git respects our lock too.
	if err := exec.Command("git", "-C", r.Path(), "update-ref", string(Branch), h.String()).Run(); err == nil {
		t.Error("git update-ref succeeded while main.lock was held")
	}

	// A crashed writer's lock is broken once stale.
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(lock, old, old); err != nil {
		t.Fatal(err)
	}
	commit(t, r, "after a crash", set("x", "2"))
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock left behind: %v", err)
	}
}

// TestGitCLIInterop: commits by the git CLI, packed refs and packed objects
// (git gc while the repository is open) are all understood.
func TestGitCLIInterop(t *testing.T) {
	r := newRepo(t)
	c1 := commit(t, r, "ours 1", set("a/x", "1"))

	// The CLI commits on top.
	tree := git(t, r.Path(), "rev-parse", c1.String()+"^{tree}")
	cli := git(t, r.Path(), "commit-tree", tree, "-p", c1.String(), "-m", "by the CLI")
	git(t, r.Path(), "update-ref", string(Branch), cli, c1.String())
	c2 := commit(t, r, "ours 2", set("a/y", "2"))
	if e, _ := r.Log(context.Background(), c2, "", 1); len(e) != 1 || e[0].Parent.String() != cli {
		t.Errorf("our commit is not on top of the CLI's: %+v", e)
	}

	// Packed refs and objects, while r stays open.
	git(t, r.Path(), "gc", "--prune=now", "--quiet")
	if _, err := os.Stat(filepath.Join(r.Path(), "refs/heads/main")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("git gc left a loose ref: %v", err)
	}
	if head, err := r.Head(); err != nil || head != c2 {
		t.Fatalf("Head from packed-refs = %s, %v; want %s", head, err, c2)
	}
	if got := readString(t, snapshot(t, r), "a/x"); got != "1" {
		t.Errorf("a/x = %q", got)
	}
	if got, err := r.ResolveCommit(cli[:9]); err != nil || got.String() != cli {
		t.Errorf("ResolveCommit of a packed commit = %s, %v", got, err)
	}
	c3 := commit(t, r, "ours 3", set("a/z", "3"))
	if got := git(t, r.Path(), "rev-parse", "main"); got != c3.String() {
		t.Errorf("git sees main at %s, want %s", got, c3)
	}
	if got := git(t, r.Path(), "log", "--format=%s", "main"); got != "ours 3\nours 2\nby the CLI\nours 1" {
		t.Errorf("git log:\n%s", got)
	}
	fsck(t, r)
}
