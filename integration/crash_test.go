package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func runOpm(t *testing.T, home string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(opmBin, args...)
	cmd.Env = append(os.Environ(), "OPM_HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCrashPush SIGKILLs opm push at random moments. Afterwards every
// visible tag pulls, every blob file holds the content its name says, and
// the next push works.
func TestCrashPush(t *testing.T) {
	trials := 6
	if testing.Short() {
		trials = 2
	}
	home := filepath.Join(t.TempDir(), "home")
	src := t.TempDir()
	for i := range 4 {
		if err := writeRandom(filepath.Join(src, fmt.Sprintf("big%d.bin", i)), 8<<20, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(src, "small"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(src, "small", fmt.Sprintf("%03d.txt", i)), []byte(strings.Repeat("x", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// One full push tells how long a push takes; the kills land anywhere
	// in that span (and a little after, so some trials complete).
	start := time.Now()
	if out, err := runOpm(t, home, "push", "crash/test/repo:full", src); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	span := time.Since(start) * 6 / 5
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, push takes %v", seed, span)
	rng := rand.New(rand.NewPCG(seed, 1))
	killed := 0
	for trial := range trials {
		// Change one file so each trial stores new content.
		os.WriteFile(filepath.Join(src, "trial.txt"), []byte(fmt.Sprint(trial, time.Now())), 0o644)
		cmd := exec.Command(opmBin, "push", fmt.Sprintf("crash/test/repo:t%d", trial), src)
		cmd.Env = append(os.Environ(), "OPM_HOME="+home)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int64N(int64(span)))
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			killed++
		}
		checkHome(t, home)
	}
	t.Logf("%d trials, %d killed mid-push", trials, killed)
	if out, err := runOpm(t, home, "push", "crash/test/repo:after", src); err != nil {
		t.Fatalf("push after crashes: %v\n%s", err, out)
	}
	checkHome(t, home)
}

// checkHome pulls every visible tag and verifies every blob file.
func checkHome(t *testing.T, home string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(home, "meta.git")); err != nil {
		return // killed before the home existed
	}
	out, err := runOpm(t, home, "ls", "crash/test/repo")
	if err != nil && !strings.Contains(out, "no such") {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(line, "opm:") {
			continue
		}
		dst := t.TempDir()
		if out, err := runOpm(t, home, "pull", "crash/test/repo:"+f[0], "-o", dst); err != nil {
			t.Fatalf("visible tag %s does not pull: %v\n%s", f[0], err, out)
		}
	}
	_, bad, err := verifyBlobDir(filepath.Join(home, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("blob files with wrong content: %v", bad)
	}
	if out, err := exec.Command("git", "-C", filepath.Join(home, "meta.git"), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Fatalf("git fsck: %v\n%s", err, out)
	}
}

// TestConcurrentProcesses: 4 opm processes × 10 pushes to one repository
// of one home; every tag lands and the history is linear.
func TestConcurrentProcesses(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if out, err := runOpm(t, home, "init"); err != nil {
		t.Fatal(err, out)
	}
	const procs, pushes = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, procs*pushes)
	for p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range pushes {
				dir := t.TempDir()
				os.WriteFile(filepath.Join(dir, "f.txt"), []byte(fmt.Sprint(p, i)), 0o644)
				if out, err := runOpm(t, home, "push", fmt.Sprintf("conc/proc/repo:p%d-%d", p, i), dir); err != nil {
					errs <- fmt.Errorf("push p%d-%d: %v: %s", p, i, err, out)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	out, err := runOpm(t, home, "ls", "conc/proc/repo")
	if err != nil {
		t.Fatal(err, out)
	}
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != procs*pushes {
		t.Fatalf("%d tags listed, want %d:\n%s", n, procs*pushes, out)
	}
	parents, err := exec.Command("git", "-C", filepath.Join(home, "meta.git"), "rev-list", "--parents", "main").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(parents)), "\n")
	if len(lines) != procs*pushes {
		t.Fatalf("%d commits, want %d", len(lines), procs*pushes)
	}
	for i, l := range lines {
		want := 2 // commit and its one parent
		if i == len(lines)-1 {
			want = 1 // the root
		}
		if len(strings.Fields(l)) != want {
			t.Fatalf("history is not linear at %q", l)
		}
	}
}
