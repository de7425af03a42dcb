package integration

// Crash tests: opm processes are SIGKILLed at random moments (seeded; the
// seed is logged and OPM_CRASH_SEED=<seed> replays it), then one shared
// check (checkAfterCrash) proves nothing was lost or corrupted and the next
// command works. The scenarios are here (push) and in crash_more_test.go
// (sync, mirror, gc, the daemon). make test runs a handful of trials each;
// make soak (scripts/soak.sh) runs the same tests with OPM_SOAK=1, 50 trials
// each, and prints one SOAK line per scenario.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/layout"
)

func runOpm(t *testing.T, home string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(opmBin, args...)
	cmd.Env = append(os.Environ(), "OPM_HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// crash is one crash scenario: its trials, its seeded random source and
// what happened.
type crash struct {
	t      *testing.T
	name   string
	seed   uint64
	rng    *rand.Rand
	trials int

	killed, completed  int // trials whose process was killed / ended by itself
	fsckClean          int // checks where opm fsck --read-data found nothing
	repairedLeftovers  int // checks where it found only leftovers, which --repair removed
	refLeftovers       int // checks after a kill that found a broken tracking ref (the next command must mend it)
	problems           int // checks that found anything else (the test fails)
	fsckRuns, verified int // opm fsck runs; blobs hashed by the test's own check

	good map[string]bool // bucket objects hashed and found good (URL, key, size, mtime)
}

// newCrash sets up a scenario of n trials (2 with -short, 50 or more with
// OPM_SOAK=1, exactly OPM_CRASH_TRIALS if set). Its summary line is
// printed when the test ends.
func newCrash(t *testing.T, name string, n int) *crash {
	switch {
	case os.Getenv("OPM_CRASH_TRIALS") != "":
		v, err := strconv.Atoi(os.Getenv("OPM_CRASH_TRIALS"))
		if err != nil || v < 1 {
			t.Fatalf("OPM_CRASH_TRIALS=%q", os.Getenv("OPM_CRASH_TRIALS"))
		}
		n = v
	case os.Getenv("OPM_SOAK") == "1":
		n = max(n, 50)
	case testing.Short():
		n = 2
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OPM_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("OPM_CRASH_SEED=%q", s)
		}
		seed = v
	}
	c := &crash{t: t, name: name, seed: seed, rng: rand.New(rand.NewPCG(seed, 1)), trials: n}
	t.Logf("crash %s: %d trials, seed %d (OPM_CRASH_SEED=%d replays it)", name, n, seed, seed)
	t.Cleanup(c.report)
	return c
}

func (c *crash) report() {
	line := fmt.Sprintf("SOAK %s: trials=%d killed=%d completed=%d fsck_clean=%d repaired_leftovers=%d problems=%d ref_leftovers=%d fsck_runs=%d blobs_verified=%d seed=%d failed=%v",
		c.name, c.trials, c.killed, c.completed, c.fsckClean, c.repairedLeftovers, c.problems, c.refLeftovers, c.fsckRuns, c.verified, c.seed, c.t.Failed())
	c.t.Log(line)
	if os.Getenv("OPM_SOAK") == "1" {
		fmt.Println(line) // scripts/soak.sh collects these
	}
}

// delay is a random moment in [0, span).
func (c *crash) delay(span time.Duration) time.Duration {
	return time.Duration(c.rng.Int64N(int64(max(span, time.Millisecond))))
}

// opmCmd is opm on home with a fixed author, in its own process group (so
// that a kill takes everything it started).
func opmCmd(home string, args ...string) *exec.Cmd {
	cmd := exec.Command(opmBin, args...)
	cmd.Env = append(os.Environ(), "OPM_HOME="+home, "GIT_AUTHOR_NAME=Crash Test", "GIT_AUTHOR_EMAIL=crash@example.org")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// killSometime runs cmd and SIGKILLs it (and its process group) after a
// random delay below span, unless it ends first. A run that ends by itself
// must succeed: it is the command after the previous trial's crash. It
// reports whether the process was killed.
func (c *crash) killSometime(trial int, cmd *exec.Cmd, span time.Duration) bool {
	c.t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		c.completed++
		if err != nil {
			c.t.Fatalf("%s trial %d (seed %d): %v, after the previous trial's crash: %v\n%s", c.name, trial, c.seed, cmd.Args[1:], err, out.String())
		}
		return false
	case <-time.After(c.delay(span)):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		c.killed++
		return true
	}
}

// measure runs cmd to completion (it must succeed) and returns how long
// it took plus half: a kill lands anywhere in that span (the machine's load
// varies), some trials complete.
func measure(t *testing.T, cmd *exec.Cmd) time.Duration {
	t.Helper()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args[1:], err, out)
	}
	return time.Since(start) * 3 / 2
}

// registryUnderTest is one registry a crash may have touched: its
// metadata and where the blobs its tags name must be.
type registryUnderTest struct {
	what   string // for messages
	meta   string // the bare git repository
	bucket string // the blob bucket URL; "" when the local store is the registry's copy
	local  string // the local store (<home>/blobs) when there is one; its files are verified
	// home and fsck: how to run opm fsck on it (fsck holds extra flags,
	// e.g. --remote mirror); no home, no opm fsck (a bare server repository).
	home string
	fsck []string
}

// homeUnderTest is a home whose registry copy is its bucket (if any) or
// its local store.
func homeUnderTest(home, bucket string) registryUnderTest {
	return registryUnderTest{what: "home " + home, meta: filepath.Join(home, "meta.git"), bucket: bucket,
		local: filepath.Join(home, "blobs"), home: home}
}

// checkAfterCrash is the one check every crash scenario runs after a
// trial, on each registry the killed command could have touched:
//   - git fsck of the metadata is clean;
//   - every tag parses, and every blob it names is in the registry's copy
//     (bucket or local store) with the size and the content (sha256) its
//     digest says;
//   - every file under blobs/sha256 of the local store, and every object
//     under blobs/sha256/ of the bucket, hashes to its name;
//   - opm fsck --read-data is clean, or finds only leftovers of the crash
//     (temporary files) that opm fsck --repair removes, after which it is
//     clean.
//
// A tracking ref (refs/remotes/…) left broken by the kill is tolerated
// here, counted, and must be gone once the next command has run: see
// checkRecovered.
func (c *crash) checkAfterCrash(trial int, regs ...registryUnderTest) {
	c.t.Helper()
	c.check(trial, false, regs...)
}

// checkRecovered is checkAfterCrash after a command completed: nothing
// broken may be left, tracking refs included.
func (c *crash) checkRecovered(trial int, regs ...registryUnderTest) {
	c.t.Helper()
	c.check(trial, true, regs...)
}

func (c *crash) check(trial int, strict bool, regs ...registryUnderTest) {
	c.t.Helper()
	for _, r := range regs {
		err := c.checkRegistry(r)
		var ref trackingRefLeftover
		if !strict && errors.As(err, &ref) {
			c.refLeftovers++
			c.t.Logf("%s trial %d (seed %d): %s: %v", c.name, trial, c.seed, r.what, err)
			err = nil
		}
		if err != nil {
			c.problems++
			c.t.Fatalf("%s trial %d (seed %d): %s: %v", c.name, trial, c.seed, r.what, err)
		}
		if r.home != "" {
			c.fsck(trial, r)
		}
	}
}

func (c *crash) checkRegistry(r registryUnderTest) error {
	if _, err := os.Stat(r.meta); errors.Is(err, os.ErrNotExist) {
		return nil // killed before the home existed
	}
	tags, err := tagManifests(r.meta)
	if err != nil {
		return err
	}
	// The registry's copy: what it holds, each object hashed.
	have := map[string]int64{}
	if r.bucket != "" {
		if have, err = c.verifyBucket(r.bucket); err != nil {
			return err
		}
	}
	if r.local != "" {
		n, bad, err := verifyBlobDir(r.local)
		if err != nil {
			return err
		}
		c.verified += n
		if len(bad) > 0 {
			return fmt.Errorf("local blob files whose content is not their name: %v", bad)
		}
		if r.bucket == "" {
			have = localBlobSizes(r.local)
		}
	}
	for tag, body := range tags {
		m, err := opm.ParseAnyManifest(body, "")
		if err != nil {
			return fmt.Errorf("tag %s does not parse: %v", tag, err)
		}
		for _, d := range m.Blobs() {
			size, ok := have[d.Digest.Encoded()]
			if !ok {
				return fmt.Errorf("tag %s names %s, which the registry's copy (%s) lacks", tag, d.Digest, cmp.Or(r.bucket, r.local))
			}
			if size != d.Size {
				return fmt.Errorf("tag %s names %s of %d bytes; the registry's copy holds %d", tag, d.Digest, d.Size, size)
			}
		}
	}
	return gitFsck(r.meta)
}

// trackingRefLeftover is a git fsck failure due only to broken tracking
// refs (refs/remotes/…): go-git rewrites a ref in place, so a kill can
// leave one empty. It names no content and the next fetch replaces it.
type trackingRefLeftover struct{ out string }

func (e trackingRefLeftover) Error() string { return "git fsck: broken tracking ref:\n" + e.out }

// gitFsck runs git fsck --strict on a bare repository.
func gitFsck(gitDir string) error {
	out, err := exec.Command("git", "-C", gitDir, "fsck", "--strict", "--no-progress").CombinedOutput()
	if err == nil {
		return nil
	}
	onlyRefs := false
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "error: ") || strings.HasPrefix(l, "fatal: ") {
			if !strings.HasPrefix(l, "error: refs/remotes/") {
				return fmt.Errorf("git fsck: %v\n%s", err, out)
			}
			onlyRefs = true
		}
	}
	if onlyRefs {
		return trackingRefLeftover{string(out)}
	}
	return fmt.Errorf("git fsck: %v\n%s", err, out)
}

// localBlobSizes lists a local store: hex digest to size.
func localBlobSizes(dir string) map[string]int64 {
	out := map[string]int64{}
	filepath.WalkDir(filepath.Join(dir, "sha256"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				out[d.Name()] = fi.Size()
			}
		}
		return nil
	})
	return out
}

// verifyBucket lists the objects under blobs/sha256/ of a bucket, hashes
// each one (but not again one already found good, unchanged since) and
// returns their sizes by name.
func (c *crash) verifyBucket(url string) (map[string]int64, error) {
	ctx := context.Background()
	bkt, err := blob.OpenBucket(ctx, url)
	if err != nil {
		return nil, err
	}
	defer bkt.Close()
	if c.good == nil {
		c.good = map[string]bool{}
	}
	have := map[string]int64{}
	it := bkt.List(&blob.ListOptions{Prefix: "blobs/sha256/"})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return have, nil
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(obj.Key, "blobs/sha256/")
		have[name] = obj.Size
		seen := fmt.Sprint(url, obj.Key, obj.Size, obj.ModTime.UnixNano())
		if c.good[seen] {
			continue
		}
		rd, err := bkt.NewReader(ctx, obj.Key, nil)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		n, err := io.Copy(h, rd)
		rd.Close()
		if err != nil {
			return nil, err
		}
		c.verified++
		if hex.EncodeToString(h.Sum(nil)) != name || n != obj.Size {
			return nil, fmt.Errorf("bucket object %s holds %d bytes hashing to %x", obj.Key, n, h.Sum(nil))
		}
		c.good[seen] = true
	}
}

// tagManifests reads every tag file on main of a bare repository (none if
// main does not exist yet).
func tagManifests(gitDir string) (map[string][]byte, error) {
	if err := exec.Command("git", "-C", gitDir, "rev-parse", "--verify", "-q", "main^{commit}").Run(); err != nil {
		return nil, nil
	}
	out, err := exec.Command("git", "-C", gitDir, "ls-tree", "-r", "-z", "main").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-tree: %v", err)
	}
	var refs, ids []string
	for _, e := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		meta, p, ok := strings.Cut(e, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			return nil, fmt.Errorf("git ls-tree: %q", e)
		}
		if lp, err := layout.Parse(p); err == nil && lp.Role == layout.RoleTag {
			refs, ids = append(refs, lp.Ref.String()), append(ids, f[2])
		}
	}
	cmd := exec.Command("git", "-C", gitDir, "cat-file", "--batch")
	cmd.Stdin = strings.NewReader(strings.Join(ids, "\n") + "\n")
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git cat-file: %v", err)
	}
	tags := map[string][]byte{}
	rd := bufio.NewReader(bytes.NewReader(raw))
	for i, ref := range refs {
		head, err := rd.ReadString('\n')
		f := strings.Fields(head)
		if err != nil || len(f) != 3 || f[0] != ids[i] {
			return nil, fmt.Errorf("git cat-file: %q %v", head, err)
		}
		n, _ := strconv.Atoi(f[2])
		body := make([]byte, n+1) // and the newline
		if _, err := io.ReadFull(rd, body); err != nil {
			return nil, err
		}
		tags[ref] = body[:n]
	}
	return tags, nil
}

// fsckReport is opm fsck --json.
type fsckReport struct {
	Commit        string        `json:"commit"`
	Tags          int           `json:"tags"`
	Manifests     int           `json:"manifests"`
	Blobs         int           `json:"blobs"`
	BytesVerified int64         `json:"bytes_verified"`
	Problems      []fsckProblem `json:"problems"`
	Repaired      int           `json:"repaired"`
}

type fsckProblem struct {
	Kind     string   `json:"kind"`
	Digest   string   `json:"digest"`
	Path     string   `json:"path"`
	Where    string   `json:"where"`
	Tags     []string `json:"tags"`
	Detail   string   `json:"detail"`
	Repaired bool     `json:"repaired"`
}

// exitFsckProblems is opm fsck's exit code for "problems found".
const exitFsckProblems = 8

// runFsck runs opm fsck --json with args on home and returns its report and
// exit code. Any exit but 0 and 8 fails the test, and so does an exit code
// that disagrees with the report: 8 if and only if it lists damage (a
// problem that is neither a leftover nor repaired).
func runFsck(t *testing.T, home string, args ...string) (fsckReport, int) {
	t.Helper()
	cmd := opmCmd(home, append([]string{"fsck", "--json"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rep fsckReport
	if code != 0 && code != exitFsckProblems {
		t.Fatalf("opm fsck %v: exit %d\n%s%s", args, code, o.String(), e.String())
	}
	if err := json.Unmarshal(o.Bytes(), &rep); err != nil {
		t.Fatalf("opm fsck %v --json: %v\n%s%s", args, err, o.String(), e.String())
	}
	if (code == exitFsckProblems) != (len(damage(rep)) > 0) {
		t.Fatalf("opm fsck %v: exit %d, but the report lists %d damage(s): %s", args, code, len(damage(rep)), o.String())
	}
	return rep, code
}

// leftover reports whether a problem is what a killed writer may leave
// behind: a temporary file.
func leftover(p fsckProblem) bool { return p.Kind == "temp-file" }

// damage is what a report lists beyond leftovers and repaired problems.
func damage(rep fsckReport) []fsckProblem {
	var out []fsckProblem
	for _, p := range rep.Problems {
		if !leftover(p) && !p.Repaired {
			out = append(out, p)
		}
	}
	return out
}

// fsck runs opm fsck --read-data on the registry: it must find no damage.
// Leftovers of the crash (temporary files) may be listed; opm fsck --repair
// must then remove them. It keeps those written in the last 10 minutes (a
// write may be in progress), so the test first ages them past that, as
// time would; a second fsck must then list nothing at all.
func (c *crash) fsck(trial int, r registryUnderTest) {
	c.t.Helper()
	args := append([]string{"--read-data"}, r.fsck...)
	rep, _ := runFsck(c.t, r.home, args...)
	c.fsckRuns++
	if d := damage(rep); len(d) > 0 {
		c.problems++
		js, _ := json.MarshalIndent(d, "", "  ")
		c.t.Fatalf("%s trial %d (seed %d): opm fsck %v on %s found damage:\n%s", c.name, trial, c.seed, args, r.what, js)
	}
	if len(rep.Problems) == 0 {
		c.fsckClean++
		return
	}
	tmp := filepath.Join(r.home, "blobs", "tmp")
	entries, _ := os.ReadDir(tmp)
	old := time.Now().Add(-11 * time.Minute)
	for _, e := range entries {
		must(c.t, os.Chtimes(filepath.Join(tmp, e.Name()), old, old))
	}
	rep, _ = runFsck(c.t, r.home, append(args, "--repair")...)
	c.fsckRuns++
	for _, p := range rep.Problems {
		if !p.Repaired {
			c.problems++
			c.t.Fatalf("%s trial %d (seed %d): opm fsck --repair left %+v", c.name, trial, c.seed, p)
		}
	}
	if rep, _ = runFsck(c.t, r.home, args...); len(rep.Problems) > 0 {
		c.problems++
		c.t.Fatalf("%s trial %d (seed %d): opm fsck after --repair: %+v", c.name, trial, c.seed, rep.Problems)
	}
	c.fsckRuns++
	c.repairedLeftovers++
}

// crashSource is a package source of a few large files and many small
// ones, so that a push spends time both hashing and committing.
func crashSource(t *testing.T, big int) string {
	t.Helper()
	src := t.TempDir()
	for i := range big {
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
	return src
}

// measurePush pushes src once, then measures a push like a trial's (one
// file changed: most blobs are stored already).
func measurePush(t *testing.T, home, src string) time.Duration {
	t.Helper()
	mustOpm(t, home, "push", "crash/test/repo:full", src)
	must(t, os.WriteFile(filepath.Join(src, "trial.txt"), []byte("warm-up"), 0o644))
	return measure(t, opmCmd(home, "push", "crash/test/repo:warm", src))
}

// TestCrashPush SIGKILLs opm push at random moments: into a home that is
// the whole registry (local store), and into a home with an origin (git
// daemon for the metadata, S3-protocol bucket for the blobs), where the
// kill can also land between the local commit and the push to origin.
func TestCrashPush(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		c := newCrash(t, "push", 5)
		home := filepath.Join(t.TempDir(), "home")
		src := crashSource(t, 2)
		span := measurePush(t, home, src)
		t.Logf("a push takes %v", span)
		for trial := range c.trials {
			// One changed file: each trial stores new content.
			must(t, os.WriteFile(filepath.Join(src, "trial.txt"), []byte(fmt.Sprint(trial, c.seed)), 0o644))
			ref := fmt.Sprintf("crash/test/repo:t%d", trial)
			if c.killSometime(trial, opmCmd(home, "push", ref, src), span) {
				c.checkAfterCrash(trial, homeUnderTest(home, ""))
				// The next command: the same push, to the end.
				mustOpm(t, home, "push", ref, src)
			}
			c.checkRecovered(trial, homeUnderTest(home, ""))
		}
	})
	t.Run("origin", func(t *testing.T) {
		c := newCrash(t, "push-origin", 4)
		srv := startGitDaemon(t)
		meta := srv.repo(t, "origin.git")
		bucket := castest.StartS3(t)
		home := t.TempDir()
		mustOpm(t, home, "remote", "add", "origin", "--meta", meta, "--blobs", bucket)
		src := crashSource(t, 1)
		span := measurePush(t, home, src)
		t.Logf("a push to origin takes %v", span)
		origin := registryUnderTest{what: "origin", meta: filepath.Join(srv.dir, "origin.git"), bucket: bucket}
		for trial := range c.trials {
			must(t, os.WriteFile(filepath.Join(src, "trial.txt"), []byte(fmt.Sprint(trial, c.seed)), 0o644))
			ref := fmt.Sprintf("crash/test/repo:t%d", trial)
			if c.killSometime(trial, opmCmd(home, "push", ref, src), span) {
				c.checkAfterCrash(trial, homeUnderTest(home, bucket), origin)
				mustOpm(t, home, "push", ref, src)
			}
			c.checkRecovered(trial, homeUnderTest(home, bucket), origin)
			if got, want := gitHead(t, home), srv.head(t, "origin.git"); got != want {
				t.Fatalf("trial %d: after a completed push the home is at %s, origin at %s", trial, got, want)
			}
		}
	})
}

// TestCrashCheckFindsDamage proves the crash check can fail: each kind of
// damage a crash could cause, made by hand, is caught by the test's own
// check and by opm fsck.
func TestCrashCheckFindsDamage(t *testing.T) {
	c := &crash{t: t, name: "damage"}
	src := pkgDir(t, 5, 3, 5000)
	named := func(home string) string {
		files := packageFiles(t, home, "crash/damage/repo:v1")
		return strings.TrimPrefix(files[0].Digest, "sha256:")
	}
	damaged := func(what string, reg registryUnderTest) {
		t.Helper()
		if err := c.checkRegistry(reg); err == nil {
			t.Errorf("%s: the check found nothing", what)
		} else {
			t.Logf("%s: %v", what, err)
		}
		if rep, code := runFsck(t, reg.home, "--read-data"); code != exitFsckProblems || len(damage(rep)) == 0 {
			t.Errorf("%s: opm fsck exit %d, %+v", what, code, rep.Problems)
		}
	}

	// A home that is the whole registry.
	home := t.TempDir()
	mustOpm(t, home, "push", "crash/damage/repo:v1", src)
	reg := homeUnderTest(home, "")
	if err := c.checkRegistry(reg); err != nil {
		t.Fatalf("an intact home: %v", err)
	}
	d := named(home)
	p := filepath.Join(home, "blobs", "sha256", d[:2], d)
	must(t, os.Chmod(p, 0o644))
	must(t, os.WriteFile(p, []byte("other bytes"), 0o644))
	damaged("a local blob file with other content", reg)
	must(t, os.Remove(p))
	damaged("a tag naming a missing local blob", reg)

	// A home whose copy is a bucket.
	home = t.TempDir()
	bucket, dir := fileBucket(t)
	mustOpm(t, home, "config", "opm.blobs", bucket)
	mustOpm(t, home, "push", "crash/damage/repo:v1", src)
	reg = homeUnderTest(home, bucket)
	if err := c.checkRegistry(reg); err != nil {
		t.Fatalf("an intact bucket home: %v", err)
	}
	d = named(home)
	p = filepath.Join(dir, "blobs", "sha256", d)
	body, err := os.ReadFile(p)
	must(t, err)
	body[0] ^= 1
	must(t, os.Chmod(p, 0o644))
	must(t, os.WriteFile(p, body, 0o644))
	damaged("a bucket object with other content", reg)
	must(t, os.Remove(p))
	damaged("a tag naming a blob missing from the bucket", reg)
}
