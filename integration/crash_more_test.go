package integration

// Crash scenarios beyond push (see crash_test.go for the harness): opm sync
// following an origin, opm sync SRC DST mirroring, opm gc, and the daemon.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/daemon"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
)

// TestCrashSyncFollow SIGKILLs opm sync --prefetch in a home following an
// origin (git daemon, S3-protocol bucket) while a publisher keeps pushing:
// the kill lands in the fetch, the fast-forward or the blob downloads.
func TestCrashSyncFollow(t *testing.T) {
	c := newCrash(t, "sync", 5)
	srv := startGitDaemon(t)
	meta := srv.repo(t, "origin.git")
	bucket := castest.StartS3(t)
	pub, reader := t.TempDir(), t.TempDir()
	mustOpm(t, pub, "remote", "add", "origin", "--meta", meta, "--blobs", bucket)
	mustOpm(t, reader, "remote", "add", "origin", "--meta", meta, "--blobs", bucket)
	mustOpm(t, pub, "push", "crash/sync/repo:base", pkgDir(t, c.seed, 20, 32<<10))
	span := measure(t, opmCmd(reader, "sync", "--prefetch"))
	t.Logf("a sync of one tag takes %v", span)
	origin := registryUnderTest{what: "origin", meta: filepath.Join(srv.dir, "origin.git"), bucket: bucket}
	for trial := range c.trials {
		mustOpm(t, pub, "push", fmt.Sprintf("crash/sync/repo:t%d", trial), pkgDir(t, c.seed+uint64(trial)+1, 20, 32<<10))
		retire(t, pub, "crash/sync/repo", trial)
		if c.killSometime(trial, opmCmd(reader, "sync", "--prefetch"), span) {
			c.checkAfterCrash(trial, homeUnderTest(reader, bucket), origin)
			mustOpm(t, reader, "sync", "--prefetch")
		}
		c.checkRecovered(trial, homeUnderTest(reader, bucket))
		if got, want := gitHead(t, reader), srv.head(t, "origin.git"); got != want {
			t.Fatalf("trial %d: after a completed sync the reader is at %s, origin at %s", trial, got, want)
		}
		// Everything was prefetched: every blob a tag names is local.
		regLocal := homeUnderTest(reader, "")
		if err := c.checkRegistry(regLocal); err != nil {
			t.Fatalf("trial %d: after sync --prefetch: %v", trial, err)
		}
	}
}

// TestCrashTrackingRefEmptied: go-git rewrites a ref file in place
// (truncate, then write), so a sync or push killed in between leaves the
// tracking ref refs/remotes/origin/main empty (found by make soak: sync
// trial 40 of seed 1795754168400311856). The next sync and push must work
// all the same, and leave git fsck clean.
func TestCrashTrackingRefEmptied(t *testing.T) {
	srv, pub, reader := publisherAndReader(t, "crash/ref/repo:v1")
	ref := filepath.Join(reader, "meta.git", "refs", "remotes", "origin", "main")
	empty := func() {
		t.Helper()
		must(t, os.WriteFile(ref, nil, 0o644))
		if err := gitFsck(filepath.Join(reader, "meta.git")); err == nil {
			t.Fatal("git fsck does not notice the empty tracking ref")
		}
	}
	empty()
	mustOpm(t, pub, "push", "crash/ref/repo:v2", pkgDir(t, 2, 1, 100))
	mustOpm(t, reader, "sync")
	if got, want := gitHead(t, reader), srv.head(t, "origin.git"); got != want {
		t.Fatalf("after sync the reader is at %s, origin at %s", got, want)
	}
	must(t, gitFsck(filepath.Join(reader, "meta.git")))
	empty()
	mustOpm(t, reader, "push", "crash/ref/repo:v3", pkgDir(t, 3, 1, 100))
	if got, want := gitHead(t, reader), srv.head(t, "origin.git"); got != want {
		t.Fatalf("after push the reader is at %s, origin at %s", got, want)
	}
	must(t, gitFsck(filepath.Join(reader, "meta.git")))
}

// publisherAndReader sets up two homes following one origin (git daemon,
// file bucket): pub pushes ref, reader syncs it.
func publisherAndReader(t *testing.T, ref string) (srv *gitServer, pub, reader string) {
	t.Helper()
	srv = startGitDaemon(t)
	meta := srv.repo(t, "origin.git")
	bucket, _ := fileBucket(t)
	pub, reader = t.TempDir(), t.TempDir()
	mustOpm(t, pub, "remote", "add", "origin", "--meta", meta, "--blobs", bucket)
	mustOpm(t, reader, "remote", "add", "origin", "--meta", meta, "--blobs", bucket)
	mustOpm(t, pub, "push", ref, pkgDir(t, 1, 1, 100))
	mustOpm(t, reader, "sync")
	return srv, pub, reader
}

// retire removes the tag of trial-5 of repo: a sync also carries removals,
// and what opm fsck --read-data re-hashes stays bounded in long soaks.
func retire(t *testing.T, home, repo string, trial int) {
	t.Helper()
	if trial >= 5 {
		mustOpm(t, home, "rm", fmt.Sprintf("%s:t%d", repo, trial-5))
	}
}

// TestCrashSyncMirror SIGKILLs opm sync origin mirror (origin: git daemon
// and a file bucket; mirror: git http-backend and an S3-protocol bucket):
// the mirror must never name a blob its bucket lacks, and the next sync
// completes it.
func TestCrashSyncMirror(t *testing.T) {
	c := newCrash(t, "mirror", 5)
	m := newMirrorSetup(t, true)
	srcURL := "file://" + m.srcDir
	mustOpm(t, m.home, "push", "crash/mirror/repo:base", pkgDir(t, c.seed, 40, 8<<10))
	span := measure(t, opmCmd(m.home, "sync", "origin", "mirror"))
	t.Logf("a mirror sync of one tag takes %v", span)
	origin := registryUnderTest{what: "origin", meta: filepath.Join(m.origin.dir, "meta.git"), bucket: srcURL}
	mirror := registryUnderTest{what: "mirror", meta: filepath.Join(m.mirror.dir, "meta.git"), bucket: m.dstBlobs,
		home: m.home, fsck: []string{"--remote", "mirror"}}
	for trial := range c.trials {
		mustOpm(t, m.home, "push", fmt.Sprintf("crash/mirror/repo:t%d", trial), pkgDir(t, c.seed+uint64(trial)+1, 40, 8<<10))
		retire(t, m.home, "crash/mirror/repo", trial)
		if c.killSometime(trial, opmCmd(m.home, "sync", "origin", "mirror"), span) {
			c.checkAfterCrash(trial, mirror, origin, homeUnderTest(m.home, srcURL))
			mustOpm(t, m.home, "sync", "origin", "mirror")
		}
		c.checkRecovered(trial, mirror, homeUnderTest(m.home, srcURL))
		if a, b := m.origin.head(t, "meta.git"), m.mirror.head(t, "meta.git"); a != b {
			t.Fatalf("trial %d: after a completed sync origin is at %s, the mirror at %s", trial, a, b)
		}
	}
}

// TestCrashGC SIGKILLs opm gc at random moments in a home with live tags
// and garbage (the blobs of removed tags), in a home that is the whole
// registry and in one whose copy is a bucket: no live tag may lose a blob,
// and the next gc removes the garbage.
func TestCrashGC(t *testing.T) {
	for _, withBucket := range []bool{false, true} {
		name := map[bool]string{false: "local", true: "bucket"}[withBucket]
		t.Run(name, func(t *testing.T) {
			c := newCrash(t, "gc-"+name, 4)
			home := t.TempDir()
			bucket, bucketDir := "", ""
			if withBucket {
				bucket, bucketDir = fileBucket(t)
				mustOpm(t, home, "config", "opm.blobs", bucket)
			}
			// garbage pushes a tag of n unique files and removes it.
			garbage := func(seed uint64) []string {
				ref := fmt.Sprintf("crash/gc/junk:g%d", seed)
				mustOpm(t, home, "push", ref, pkgDir(t, seed, 40, 16<<10))
				files := packageFiles(t, home, ref)
				mustOpm(t, home, "rm", ref)
				var ds []string
				for _, f := range files {
					if f.Symlink == "" && f.Size > 0 {
						ds = append(ds, strings.TrimPrefix(f.Digest, "sha256:"))
					}
				}
				return ds
			}
			gcArgs := []string{"gc", "--grace", "0s", "--keep", "0s"}
			mustOpm(t, home, "push", "crash/gc/live:base", pkgDir(t, c.seed, 5, 16<<10))
			garbage(c.seed + 1000)
			span := measure(t, opmCmd(home, gcArgs...))
			t.Logf("a gc of one tag's garbage takes %v", span)
			reg := homeUnderTest(home, bucket)
			for trial := range c.trials {
				s := c.seed + 2000 + uint64(trial)*10
				mustOpm(t, home, "push", fmt.Sprintf("crash/gc/live:t%d", trial), pkgDir(t, s, 5, 16<<10))
				junk := garbage(s + 1)
				if c.killSometime(trial, opmCmd(home, gcArgs...), span) {
					c.checkAfterCrash(trial, reg)
					mustOpm(t, home, gcArgs...)
				}
				c.checkRecovered(trial, reg)
				// The completed gc removed the garbage from the registry's copy.
				for _, d := range junk {
					p := filepath.Join(home, "blobs", "sha256", d[:2], d)
					if withBucket {
						p = filepath.Join(bucketDir, "blobs", "sha256", d)
					}
					if exists(p) {
						t.Fatalf("trial %d: garbage blob %s still there after a completed gc", trial, p)
					}
				}
			}
		})
	}
}

// TestCrashDaemon SIGKILLs the daemon (opm mount --daemon) while files
// are read through its mount and pushes go through its socket. Reads that
// succeed return the right bytes; nothing fails before the kill; after it
// the home checks out and the mount comes back on the same mount point.
func TestCrashDaemon(t *testing.T) {
	opmtest.RequireFUSE(t)
	c := newCrash(t, "daemon", 4)
	home := filepath.Join(t.TempDir(), "home")
	src := sourceTree(t, c.seed)
	opmOK(t, home, nil, "push", "crash/daemon/kit:v1", src)
	var files []fileInfo
	for _, f := range packageFiles(t, home, "crash/daemon/kit:v1") {
		if f.Symlink == "" {
			files = append(files, f)
		}
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() { unmountAndWait(t, home, mnt) })
	pushSrc := t.TempDir()
	for trial := range c.trials {
		// The mount point is dead since the last trial's kill: mounting
		// again recovers it.
		opmOK(t, home, nil, "mount", "--daemon", mnt)
		pid := mountStatus(t, mnt).PID

		var (
			mu       sync.Mutex
			killedAt time.Time // zero until the kill
			reads    int
			pushes   int
		)
		failedBeforeKill := func(what string, err error, out []byte) {
			mu.Lock()
			defer mu.Unlock()
			if killedAt.IsZero() {
				t.Errorf("trial %d (seed %d): %s failed before the daemon was killed: %v\n%s", trial, c.seed, what, err, out)
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for r := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := r; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					f := files[i%len(files)]
					got, err := hashFile(filepath.Join(mnt, "crash/daemon/kit/v1", f.Path))
					if err != nil {
						failedBeforeKill("read "+f.Path, err, nil)
						continue
					}
					if "sha256:"+got != f.Digest {
						t.Errorf("trial %d (seed %d): %s read through the mount hashes to %s, want %s", trial, c.seed, f.Path, got, f.Digest)
					}
					mu.Lock()
					reads++
					mu.Unlock()
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				dir := filepath.Join(pushSrc, fmt.Sprintf("%d-%d", trial, i))
				if err := writeRandom(filepath.Join(dir, "data.bin"), 64<<10, c.seed+uint64(trial*1000+i)); err != nil {
					t.Error(err)
					return
				}
				cmd := opmCmd(home, "push", fmt.Sprintf("crash/daemon/pushed:t%d-%d", trial, i), dir)
				if out, err := cmd.CombinedOutput(); err != nil {
					failedBeforeKill("push", err, out)
				} else {
					mu.Lock()
					pushes++
					mu.Unlock()
				}
			}
		}()

		// The kill lands at a random moment (deliberately a sleep: the
		// moment is the test's input, not something waited for).
		time.Sleep(c.delay(1500 * time.Millisecond))
		mu.Lock()
		killedAt = time.Now()
		mu.Unlock()
		must(t, syscall.Kill(pid, syscall.SIGKILL))
		c.killed++
		gone := killedDaemonGone(home, mnt)
		// The readers and the pusher stop before the test may end.
		close(stop)
		wg.Wait()
		if gone != nil {
			t.Fatalf("trial %d: %v", trial, gone)
		}
		t.Logf("trial %d: killed after %d reads and %d pushes", trial, reads, pushes)
		c.checkAfterCrash(trial, homeUnderTest(home, ""))
		// With the daemon dead, a push runs on its own.
		must(t, writeRandom(filepath.Join(pushSrc, "after", "data.bin"), 1000, c.seed+uint64(trial)))
		opmOK(t, home, nil, "push", fmt.Sprintf("crash/daemon/pushed:after%d", trial), filepath.Join(pushSrc, "after"))
	}
	// The last kill's mount point mounts again and serves the package.
	opmOK(t, home, nil, "mount", "--daemon", mnt)
	shOK(t, mnt, "diff -r "+src+" crash/daemon/kit/v1")
	opmOK(t, home, nil, "push", "crash/daemon/pushed:last", src)
	unmountAndWait(t, home, mnt)
	c.checkRecovered(c.trials, homeUnderTest(home, ""))
}

// hashFile is the hex sha256 of a file's content.
func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TestCrashFetchPackHalfWritten: go-git saves a fetched packfile by
// writing its .idx in place and then renaming the .pack into place, and it
// skips writing an .idx that already exists. A fetch killed while writing
// the .idx (found by CI: TestCrashSyncMirror, "commit …: EOF") left a
// truncated .idx with no .pack; the next fetch received the same pack, kept
// the truncated .idx beside it, and every read of those objects failed.
// From either state (the second is what homes hit by that bug hold) the
// next sync must work, and leave git fsck clean.
func TestCrashFetchPackHalfWritten(t *testing.T) {
	for _, keepPack := range []bool{false, true} {
		name := map[bool]string{false: "idx-without-pack", true: "cut-idx-beside-its-pack"}[keepPack]
		t.Run(name, func(t *testing.T) {
			srv, pub, reader := publisherAndReader(t, "crash/pack/repo:v1")
			gitDir := filepath.Join(reader, "meta.git")
			v1 := gitHead(t, reader)
			packs := func() map[string]bool {
				m := map[string]bool{}
				ents, err := os.ReadDir(filepath.Join(gitDir, "objects", "pack"))
				must(t, err)
				for _, e := range ents {
					m[e.Name()] = true
				}
				return m
			}
			before := packs()
			mustOpm(t, pub, "push", "crash/pack/repo:v2", pkgDir(t, 2, 1, 100))
			mustOpm(t, reader, "sync")
			var idx string
			for name := range packs() {
				if !before[name] && strings.HasSuffix(name, ".idx") {
					idx = filepath.Join(gitDir, "objects", "pack", name)
				}
			}
			if idx == "" {
				t.Fatal("the sync wrote no pack")
			}
			b, err := os.ReadFile(idx)
			must(t, err)
			must(t, os.WriteFile(idx, b[:len(b)/2], 0o444))
			must(t, os.WriteFile(filepath.Join(gitDir, "refs/heads/main"), []byte(v1+"\n"), 0o644))
			if !keepPack {
				// As the kill leaves it: the .pack not yet renamed, the
				// tracking ref not yet moved.
				must(t, os.Remove(strings.TrimSuffix(idx, ".idx")+".pack"))
				must(t, os.WriteFile(filepath.Join(gitDir, "refs/remotes/origin/main"), []byte(v1+"\n"), 0o644))
			}
			mustOpm(t, reader, "sync")
			if got, want := gitHead(t, reader), srv.head(t, "origin.git"); got != want {
				t.Fatalf("after sync the reader is at %s, origin at %s", got, want)
			}
			mustOpm(t, reader, "ls")
			must(t, gitFsck(gitDir))
		})
	}
}

// killedDaemonGone waits for a daemon killed by the test to let its home go
// and for its mount to die.
func killedDaemonGone(home, mnt string) error {
	return opmtest.Wait("the killed daemon to let the home go and its mount to die", func() error {
		if daemon.Held(home) {
			return errors.New("the home is still held")
		}
		if !opmfs.Dead(mnt) {
			return errors.New("the mount still answers")
		}
		return nil
	})
}
