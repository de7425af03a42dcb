package integration

// Concurrency: many opm processes push at once (8 × 50 with the real
// binary) while others pull, read through a FUSE mount and collect garbage.
// Afterwards every push is a tag with the digest its push printed, the
// history is linear (one commit per push, no merges), and no read failed
// because of the writers.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm/internal/opmtest"
)

// storm is a run of concurrent pushes into one home and of the readers
// that go on meanwhile.
type storm struct {
	t          *testing.T
	home       string
	procs, per int
	ref        func(p, i int) string // the tag push i of process p makes
	common     []byte                // a file every push shares (same blob)
	commonSum  string
	garbage    []string // blobs that were garbage, aged past gc's grace, when the pushes began

	mu     sync.Mutex
	pushed []pushedTag // confirmed by their push, in order
	reads  map[string]int
	// first is closed when the first push is confirmed: readers of tags
	// already pushed wait for it.
	first     chan struct{}
	firstOnce sync.Once
}

type pushedTag struct {
	ref, digest string
	body        string // the content of its f.txt
}

func newStorm(t *testing.T, home string, procs, per int, ref func(p, i int) string) *storm {
	s := &storm{t: t, home: home, procs: procs, per: per, ref: ref, reads: map[string]int{}, first: make(chan struct{})}
	p := filepath.Join(t.TempDir(), "common.bin")
	must(t, writeRandom(p, 64<<10, 99))
	common, err := os.ReadFile(p)
	must(t, err)
	s.common, s.commonSum = common, sha256File(t, p)
	return s
}

// source is the package of push i of process p: a file of its own and
// the common one.
func (s *storm) source(p, i int) (dir, body string, err error) {
	dir = filepath.Join(s.t.TempDir(), "src")
	body = fmt.Sprintf("process %d push %d\n", p, i)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte(body), 0o644); err != nil {
		return "", "", err
	}
	return dir, body, os.WriteFile(filepath.Join(dir, "common.bin"), s.common, 0o644)
}

// makeGarbage pushes a tag of n files, removes it and ages its blobs past
// any grace period: garbage for the gc that runs during the pushes.
func (s *storm) makeGarbage(n int) {
	s.garbage = append(s.garbage, makeGarbage(s.t, s.home, "conc/junk/old:gone", pkgDir(s.t, 77, n, 4<<10))...)
}

// makeGarbage pushes the files of dir as ref, removes the tag and ages the
// blobs it named by two hours. It returns their hex digests.
func makeGarbage(t *testing.T, home, ref, dir string) []string {
	t.Helper()
	mustOpm(t, home, "push", ref, dir)
	files := packageFiles(t, home, ref)
	mustOpm(t, home, "rm", ref)
	old := time.Now().Add(-2 * time.Hour)
	var out []string
	for _, f := range files {
		d := strings.TrimPrefix(f.Digest, "sha256:")
		must(t, os.Chtimes(filepath.Join(home, "blobs", "sha256", d[:2], d), old, old))
		out = append(out, d)
	}
	return out
}

// run makes the pushes, procs processes at a time, while each of readers
// runs until the pushes end (a reader gets a stop channel). Every push
// must succeed. The readers and the pushing processes start at once.
func (s *storm) run(readers ...func(stop <-chan struct{})) time.Duration {
	s.t.Helper()
	stop := make(chan struct{})
	start := opmtest.NewBarrier(len(readers) + s.procs)
	var rw sync.WaitGroup
	for _, r := range readers {
		rw.Add(1)
		go func() {
			defer rw.Done()
			start.Wait()
			r(stop)
		}()
	}
	began := time.Now()
	var wg sync.WaitGroup
	for p := range s.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			for i := range s.per {
				dir, body, err := s.source(p, i)
				if err != nil {
					s.t.Error(err)
					return
				}
				ref := s.ref(p, i)
				cmd := exec.Command(opmBin, "push", ref, dir)
				cmd.Env = append(os.Environ(), "OPM_HOME="+s.home, "GIT_AUTHOR_NAME=Storm", "GIT_AUTHOR_EMAIL=storm@example.org")
				out, err := cmd.Output()
				if err != nil {
					var stderr []byte
					if ee, ok := err.(*exec.ExitError); ok {
						stderr = ee.Stderr
					}
					s.t.Errorf("push %s: %v\n%s%s", ref, err, out, stderr)
					continue
				}
				d := strings.TrimSpace(string(out))
				if _, err := digest.Parse(d); err != nil {
					s.t.Errorf("push %s printed %q, not a digest", ref, out)
					continue
				}
				s.mu.Lock()
				s.pushed = append(s.pushed, pushedTag{ref: ref, digest: d, body: body})
				s.mu.Unlock()
				s.firstOnce.Do(func() { close(s.first) })
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	close(stop)
	rw.Wait()
	return took
}

// pick returns a tag already pushed, waiting for the first push if need
// be; false if the pushes end first.
func (s *storm) pick(rng *rand.Rand, stop <-chan struct{}) (pushedTag, bool) {
	select {
	case <-s.first:
	case <-stop:
		return pushedTag{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushed[rng.IntN(len(s.pushed))], true
}

func (s *storm) counted(kind string) {
	s.mu.Lock()
	s.reads[kind]++
	s.mu.Unlock()
}

// puller pulls tags already pushed, again and again; every pull must work
// and give the pushed files.
func (s *storm) puller(seed uint64) func(stop <-chan struct{}) {
	return func(stop <-chan struct{}) {
		rng := rand.New(rand.NewPCG(seed, 2))
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			tag, ok := s.pick(rng, stop)
			if !ok {
				return
			}
			out := filepath.Join(s.t.TempDir(), "out")
			if o, err := runOpm(s.t, s.home, "pull", tag.ref, "-o", out); err != nil {
				s.t.Errorf("pull %s during the pushes: %v\n%s", tag.ref, err, o)
				continue
			}
			if b, err := os.ReadFile(filepath.Join(out, "f.txt")); err != nil || string(b) != tag.body {
				s.t.Errorf("pull %s: f.txt %q %v, want %q", tag.ref, b, err, tag.body)
			}
			if got, err := hashFile(filepath.Join(out, "common.bin")); err != nil || got != s.commonSum {
				s.t.Errorf("pull %s: common.bin hashes to %s %v", tag.ref, got, err)
			}
			os.RemoveAll(out)
			s.counted("pull")
			// Two pulls a second: every opm process takes the home's
			// Badger index for itself, and pushes wait while pulls hold
			// it. Measured (when a wait backed off up to a second): 8 × 50
			// pushes alone 30 s; beside two pullers at 5 pulls a second
			// each, 3 minutes; at 2 a second, under a minute.
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// mountReader reads tags already pushed through the mount at mnt. A tag
// the mount does not show yet is skipped (it shows within a second); a
// tag it shows must read back exactly.
func (s *storm) mountReader(mnt string, seed uint64) func(stop <-chan struct{}) {
	return func(stop <-chan struct{}) {
		rng := rand.New(rand.NewPCG(seed, 3))
		for {
			select {
			case <-stop:
				return
			default:
			}
			tag, ok := s.pick(rng, stop)
			if !ok {
				return
			}
			repo, t, _ := strings.Cut(tag.ref, ":")
			dir := filepath.Join(mnt, repo, t)
			if _, err := os.Stat(dir); os.IsNotExist(err) {
				// Not shown yet: another tag, after a pause (the pause
				// paces this reader; it waits for nothing).
				s.counted("mount-not-yet")
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if b, err := os.ReadFile(filepath.Join(dir, "f.txt")); err != nil || string(b) != tag.body {
				s.t.Errorf("read %s/f.txt through the mount during the pushes: %q %v, want %q", tag.ref, b, err, tag.body)
			}
			if got, err := hashFile(filepath.Join(dir, "common.bin")); err != nil || got != s.commonSum {
				s.t.Errorf("read %s/common.bin through the mount: %s %v", tag.ref, got, err)
			}
			s.counted("mount")
		}
	}
}

// gcLoop runs opm gc (with a grace period: pushes are in flight) again and
// again; each run must succeed.
func (s *storm) gcLoop(args ...string) func(stop <-chan struct{}) {
	return func(stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			cmd := exec.Command(opmBin, append([]string{"gc", "--json"}, args...)...)
			cmd.Env = append(os.Environ(), "OPM_HOME="+s.home)
			o, err := cmd.Output()
			var res struct {
				Removed []struct{} `json:"removed"`
			}
			if err == nil {
				err = json.Unmarshal(o, &res)
			}
			if err != nil {
				s.t.Errorf("opm gc during the pushes: %v\n%s", err, o)
				return
			}
			s.mu.Lock()
			s.reads["gc"]++
			s.reads["gc-removed"] += len(res.Removed)
			s.mu.Unlock()
			time.Sleep(time.Second)
		}
	}
}

// check proves the outcome: every push is a tag holding the digest it
// printed, one commit per push on a linear history after base commits,
// and every blob named is stored with its content.
func (s *storm) check(baseCommits int) {
	t := s.t
	t.Helper()
	meta := filepath.Join(s.home, "meta.git")
	tags, err := tagManifests(meta)
	must(t, err)
	if len(s.pushed) != s.procs*s.per {
		t.Fatalf("%d of %d pushes succeeded", len(s.pushed), s.procs*s.per)
	}
	for _, p := range s.pushed {
		body, ok := tags[p.ref]
		if !ok {
			t.Errorf("tag %s (pushed, %s) is not in the metadata", p.ref, p.digest)
			continue
		}
		if got := digest.FromBytes(body).String(); got != p.digest {
			t.Errorf("tag %s holds %s, its push printed %s", p.ref, got, p.digest)
		}
	}
	if merges := strings.TrimSpace(git(t, "-C", meta, "rev-list", "--merges", "main")); merges != "" {
		t.Errorf("merge commits on main: %s", merges)
	}
	n, err := strconv.Atoi(strings.TrimSpace(git(t, "-C", meta, "rev-list", "--count", "main")))
	must(t, err)
	if n != baseCommits+len(s.pushed) {
		t.Errorf("%d commits on main, want %d (base) + %d (pushes)", n, baseCommits, len(s.pushed))
	}
	for i, l := range strings.Split(strings.TrimSpace(git(t, "-C", meta, "rev-list", "--parents", "main")), "\n") {
		if f := strings.Fields(l); len(f) > 2 || (len(f) == 1 && i != n-1) {
			t.Fatalf("history is not linear at %q", l)
		}
	}
	c := &crash{t: t, name: "concurrency"}
	if err := c.checkRegistry(homeUnderTest(s.home, "")); err != nil {
		t.Fatal(err)
	}
	if rep, _ := runFsck(t, s.home, "--read-data"); len(rep.Problems) > 0 {
		t.Errorf("opm fsck --read-data after the pushes: %+v", rep.Problems)
	}
	t.Logf("reads during the pushes: %v", s.reads)
	// The gc that ran meanwhile did its job.
	for _, d := range s.garbage {
		if exists(filepath.Join(s.home, "blobs", "sha256", d[:2], d)) {
			t.Errorf("garbage blob %s is still there after the gc runs", d)
		}
	}
}

// stormSize is 8 processes × 50 pushes, or 4 × 10 with -short.
func stormSize() (procs, per int) {
	if testing.Short() {
		return 4, 10
	}
	return 8, 50
}

func commitCount(t *testing.T, home string) int {
	out, err := exec.Command("git", "-C", filepath.Join(home, "meta.git"), "rev-list", "--count", "main").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// TestConcurrentPushesOneRepository: 8 processes push 50 tags each into
// one repository of one home (each process opens the home itself), while
// two more pull tags already pushed and another runs opm gc again and
// again. Before the pushes, a removed tag left 100 blobs of garbage, aged
// past gc's grace period: gc must remove those and nothing a push names.
func TestConcurrentPushesOneRepository(t *testing.T) {
	procs, per := stormSize()
	home := filepath.Join(t.TempDir(), "home")
	mustOpm(t, home, "init")
	s := newStorm(t, home, procs, per, func(p, i int) string { return fmt.Sprintf("conc/one/repo:p%d-%d", p, i) })
	s.makeGarbage(100)
	base := commitCount(t, home)
	took := s.run(s.puller(1), s.puller(2), s.gcLoop("--grace", "10m", "--keep", "0s"))
	t.Logf("%d × %d pushes into one repository: %v", procs, per, took)
	s.check(base)
}

// TestConcurrentPushesManyRepositories: 8 processes push 50 tags each,
// each into its own repository. Each process opens the home itself, while
// two more pull and another runs opm gc (as in the one-repository test);
// then the same through a daemon (TestConcurrentPushesManyRepositoriesMount).
func TestConcurrentPushesManyRepositories(t *testing.T) {
	procs, per := stormSize()
	home := filepath.Join(t.TempDir(), "home")
	mustOpm(t, home, "init")
	s := newStorm(t, home, procs, per, func(p, i int) string { return fmt.Sprintf("conc/many/r%d:v%d", p, i) })
	s.makeGarbage(100)
	base := commitCount(t, home)
	took := s.run(s.puller(6), s.puller(7), s.gcLoop("--grace", "10m", "--keep", "0s"))
	t.Logf("%d × %d pushes into %d repositories: %v", procs, per, procs, took)
	s.check(base)
}

// TestConcurrentPushesManyRepositoriesMount: 8 processes push 50 tags
// each, each into its own repository, while the home's daemon serves a
// FUSE mount: the pushes, the pulls and opm gc go through the daemon's
// socket (which carries out one command at a time), reads go through the
// mount.
func TestConcurrentPushesManyRepositoriesMount(t *testing.T) {
	opmtest.RequireFUSE(t)
	procs, per := stormSize()
	home := filepath.Join(t.TempDir(), "home")
	mustOpm(t, home, "init")
	mnt := mountDaemon(t, home)
	s := newStorm(t, home, procs, per, func(p, i int) string { return fmt.Sprintf("conc/many/r%d:v%d", p, i) })
	s.makeGarbage(100)
	base := commitCount(t, home)
	before := mountStatus(t, mnt).Commands
	took := s.run(s.puller(3), s.mountReader(mnt, 4), s.mountReader(mnt, 5), s.gcLoop("--grace", "10m", "--keep", "0s"))
	t.Logf("%d × %d pushes into %d repositories through the daemon: %v", procs, per, procs, took)
	if st := mountStatus(t, mnt); st.Commands-before < int64(procs*per) {
		t.Errorf("the daemon carried out %d commands; the %d pushes did not all go through it", st.Commands-before, procs*per)
	}
	// Every tag shows in the mount and reads back.
	for _, p := range s.pushed {
		repo, tag, _ := strings.Cut(p.ref, ":")
		f := filepath.Join(mnt, repo, tag, "f.txt")
		opmtest.Eventually(t, p.ref+" to show in the mount", appears(f))
		if b, err := os.ReadFile(f); err != nil || string(b) != p.body {
			t.Errorf("%s through the mount: %q %v", f, b, err)
		}
	}
	unmountAndWait(t, home, mnt)
	s.check(base)
}

// TestConcurrentGCReusedGarbage: a push names again a blob that is garbage
// (the only tag naming it was removed) and older than gc's grace period,
// while opm gc runs. The push finds the blob stored and keeps it; gc must
// not remove it under the push.
//
// Found by this test: gc removed it (the push's ingest found the file
// present and left it as it was; gc listed it as unnamed and old, re-read
// the heads before the push committed, and deleted it). Now a write that
// finds its blob stored refreshes the file's time, and writers hold the
// home's gc lock shared until their commit while gc takes it exclusively
// before its last reading of the heads (registry/gclock.go).
func TestConcurrentGCReusedGarbage(t *testing.T) {
	for _, kind := range []string{"local", "bucket"} {
		t.Run(kind, func(t *testing.T) { testGCReusedGarbage(t, kind == "bucket") })
	}
}

func testGCReusedGarbage(t *testing.T, withBucket bool) {
	// The race is provoked only if gc runs while the push stores big.bin.
	// A push that ended before gc could start (a fast machine) proves
	// nothing: the scenario is run again, in a fresh home, with a file
	// twice as big; the test fails if it is never provoked.
	const attempts = 4
	size := int64(300 << 20)
	for attempt := 1; !gcBesidePush(t, withBucket, size); attempt++ {
		if attempt == attempts {
			t.Fatalf("in %d attempts (big.bin up to %d MiB) the push always ended before gc could run beside it", attempts, size>>20)
		}
		size *= 2
	}
}

// gcBesidePush runs the scenario of TestConcurrentGCReusedGarbage once, with
// a big.bin of size bytes, and reports whether gc ran while the push stored
// it. When it did not, nothing was checked and the attempt's files are
// removed.
func gcBesidePush(t *testing.T, withBucket bool, size int64) bool {
	t.Helper()
	dir := t.TempDir()
	home, bucket := filepath.Join(dir, "home"), filepath.Join(dir, "bucket")
	if withBucket {
		must(t, os.Mkdir(bucket, 0o755))
		mustOpm(t, home, "config", "opm.blobs", "file://"+bucket)
	}
	reused := map[string]string{"x.txt": "content pushed, removed, then pushed again\n"}
	for _, d := range makeGarbage(t, home, "conc/gc/race:a", opmtest.WriteTree(t, reused)) {
		if withBucket { // the bucket's copy is as old as the local one
			old := time.Now().Add(-2 * time.Hour)
			must(t, os.Chtimes(filepath.Join(bucket, "blobs", "sha256", d), old, old))
		}
	}
	src := opmtest.WriteTree(t, reused)
	must(t, writeRandom(filepath.Join(src, "big.bin"), size, 1))
	push := opmCmd(home, "push", "conc/gc/race:b", src)
	out := &strings.Builder{}
	push.Stdout, push.Stderr = out, out
	must(t, push.Start())
	done := make(chan error, 1)
	go func() { done <- push.Wait() }()
	// While big.bin is being stored (its temporary file exists), x.txt was
	// found stored already.
	tmp := filepath.Join(home, "blobs", "tmp")
	var ended bool
	var pushErr error
	opmtest.Eventually(t, "big.bin's temporary file in "+tmp+" (or the end of the push)", func() error {
		if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
			return nil
		}
		select {
		case pushErr = <-done:
			ended = true
			return nil
		default:
			return errors.New("no temporary file yet")
		}
	})
	if ended {
		if pushErr != nil {
			t.Fatalf("push: %v\n%s", pushErr, out)
		}
		t.Logf("the push ended before gc could run beside it (big.bin of %d MiB): trying again", size>>20)
		os.RemoveAll(dir)
		os.RemoveAll(src)
		return false
	}
	gcOut := mustOpm(t, home, "gc", "--grace", "1m", "--keep", "0s")
	if err := <-done; err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	c := &crash{t: t, name: "gc-reuse"}
	if err := c.checkRegistry(homeUnderTest(home, "")); err != nil {
		t.Fatalf("after a gc beside the push (gc said %q): %v", gcOut.stdout, err)
	}
	mustOpm(t, home, "pull", "conc/gc/race:b", "-o", filepath.Join(t.TempDir(), "out"))
	return true
}
