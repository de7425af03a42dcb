package integration

// End-to-end tests of remotes and opm sync against real servers on
// loopback: git daemon and git http-backend (behind net/http/cgi) for the
// metadata, gofakes3 (S3 protocol) and file:// buckets for the blobs.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/opmtest"
)

// gitServer serves the bare repositories under dir.
type gitServer struct {
	dir string
	url string // base URL; a repository is url + "/" + name
}

// startGitDaemon runs `git daemon` with push enabled on a free loopback port.
func startGitDaemon(t *testing.T) *gitServer {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("git", "daemon", "--export-all", "--enable=receive-pack", "--reuseaddr",
		"--base-path="+dir, "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), dir)
	// Its own process group, so that its per-connection children go too;
	// its log in a file, so that no child holds the test's output open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(t.TempDir(), "git-daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		logf.Close()
	})
	// Ready when it answers for a repository of its own: a connection
	// alone could reach whoever took the port between its Close above and
	// the daemon's bind.
	g := &gitServer{dir: dir, url: fmt.Sprintf("git://127.0.0.1:%d", port)}
	probe := g.repo(t, "ready-probe.git")
	quit := false
	opmtest.Eventually(t, "git daemon to answer on port "+strconv.Itoa(port), func() error {
		select {
		case <-exited:
			quit = true
			return nil
		default:
		}
		if out, err := exec.Command("git", "ls-remote", probe).CombinedOutput(); err != nil {
			return fmt.Errorf("git ls-remote %s: %v: %s", probe, err, bytes.TrimSpace(out))
		}
		return nil
	})
	if quit {
		log, _ := os.ReadFile(logf.Name())
		t.Fatalf("git daemon exited: %s", log)
	}
	return g
}

// startGitHTTP serves git's smart HTTP protocol with git-http-backend.
func startGitHTTP(t *testing.T) *gitServer {
	t.Helper()
	backend := "/usr/lib/git-core/git-http-backend"
	if out, err := exec.Command("git", "--exec-path").Output(); err == nil {
		backend = filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	}
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("no git-http-backend: %v", err)
	}
	dir := t.TempDir()
	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &gitServer{dir: dir, url: srv.URL}
}

// repo creates an empty bare repository and returns its URL.
func (g *gitServer) repo(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(g.dir, name)
	git(t, "init", "-q", "--bare", "--initial-branch=main", p)
	git(t, "-C", p, "config", "http.receivepack", "true")
	return g.url + "/" + name
}

func (g *gitServer) head(t *testing.T, name string) string {
	t.Helper()
	out, _ := exec.Command("git", "-C", filepath.Join(g.dir, name), "rev-parse", "--verify", "-q", "main").Output()
	return strings.TrimSpace(string(out))
}

func git(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// run is one invocation of the opm binary.
type run struct {
	stdout, stderr string
	code           int
}

func syncOpm(t *testing.T, home string, args ...string) run {
	t.Helper()
	cmd := exec.Command(opmBin, args...)
	cmd.Env = append(os.Environ(), "OPM_HOME="+home, "GIT_AUTHOR_NAME=Tess Ter", "GIT_AUTHOR_EMAIL=tess@example.org")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := run{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("opm %v: %v", args, err)
	}
	return r
}

func mustOpm(t *testing.T, home string, args ...string) run {
	t.Helper()
	r := syncOpm(t, home, args...)
	if r.code != 0 {
		t.Fatalf("opm %v: exit %d\n%s", args, r.code, r.stderr)
	}
	return r
}

func wantCode(t *testing.T, r run, code int, pattern string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, pattern) {
		t.Fatalf("want exit %d and %q, got exit %d: %s", code, pattern, r.code, r.stderr)
	}
}

// pkgDir writes a small package tree whose content depends on seed.
func pkgDir(t *testing.T, seed uint64, files int, size int64) string {
	t.Helper()
	dir := t.TempDir()
	for i := range files {
		if err := writeRandom(filepath.Join(dir, fmt.Sprintf("f%03d.bin", i)), size, seed*1000+uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fileBucket(t *testing.T) (url, dir string) {
	dir = t.TempDir()
	return "file://" + dir, dir
}

// bucketBlobs counts the complete blobs in a file:// bucket directory.
func bucketBlobs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	for _, e := range entries {
		if len(e.Name()) == 64 {
			out[e.Name()] = true
		}
	}
	return out
}

func samePackage(t *testing.T, home, ref, want string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	mustOpm(t, home, "pull", ref, "-o", out)
	if b, err := exec.Command("diff", "-r", want, out).CombinedOutput(); err != nil {
		t.Fatalf("%s pulled differs: %s", ref, b)
	}
}

// A publisher pushes to origin (git daemon, S3 bucket); a reader follows
// with opm sync and reads; its blobs come lazily from origin's bucket.
func TestSyncPublishAndFollow(t *testing.T) {
	srv := startGitDaemon(t)
	meta := srv.repo(t, "origin.git")
	blobs := castest.StartS3(t)
	pub, reader := t.TempDir(), t.TempDir()
	mustOpm(t, pub, "remote", "add", "origin", "--meta", meta, "--blobs", blobs)
	mustOpm(t, reader, "remote", "add", "origin", "--blobs", blobs, "--meta", meta)
	ls := mustOpm(t, reader, "remote", "ls", "--json")
	var rms []map[string]string
	if err := json.Unmarshal([]byte(ls.stdout), &rms); err != nil || len(rms) != 1 || rms[0]["meta"] != meta {
		t.Fatalf("remote ls --json: %v %s", err, ls.stdout)
	}
	wantCode(t, syncOpm(t, reader, "remote", "add", "origin", "--meta", meta, "--blobs", blobs), 6, "already exists")

	v1 := pkgDir(t, 1, 3, 10000)
	mustOpm(t, pub, "push", "acme/web/site:v1", v1)
	if srv.head(t, "origin.git") == "" {
		t.Fatal("origin has no main after the push")
	}
	mustOpm(t, reader, "sync")
	if n := len(localBlobs(t, reader)); n != 0 {
		t.Fatalf("sync fetched %d blobs; they should stay lazy", n)
	}
	samePackage(t, reader, "acme/web/site:v1", v1)

	v2 := pkgDir(t, 2, 2, 5000)
	mustOpm(t, pub, "push", "acme/web/site:v2", v2)
	r := mustOpm(t, reader, "sync", "--json")
	var res struct {
		Commits int `json:"commits"`
	}
	json.Unmarshal([]byte(r.stdout), &res)
	if res.Commits != 1 {
		t.Fatalf("second sync: %s", r.stdout)
	}
	if got, want := gitHead(t, reader), srv.head(t, "origin.git"); got != want {
		t.Fatalf("reader at %s, origin at %s", got, want)
	}
	mustOpm(t, reader, "sync", "--prefetch", "acme/web/site:v2")
	if n := len(localBlobs(t, reader)); n < 3 {
		t.Fatalf("prefetch left %d blobs local", n)
	}
	samePackage(t, reader, "acme/web/site:v2", v2)

	// A reader that committed on its own diverges: refused, then --force.
	mustOpm(t, reader, "remote", "rm", "origin")
	mustOpm(t, reader, "push", "acme/web/local:v1", v1)
	mustOpm(t, reader, "remote", "add", "origin", "--meta", meta, "--blobs", blobs)
	mustOpm(t, pub, "push", "acme/web/site:v3", v2)
	wantCode(t, syncOpm(t, reader, "sync"), 4, "diverged")
	mustOpm(t, reader, "sync", "--force")
	if got, want := gitHead(t, reader), srv.head(t, "origin.git"); got != want {
		t.Fatalf("after --force reader at %s, origin at %s", got, want)
	}
}

func gitHead(t *testing.T, home string) string {
	t.Helper()
	return strings.TrimSpace(git(t, "-C", filepath.Join(home, "meta.git"), "rev-parse", "main"))
}

func localBlobs(t *testing.T, home string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(home, "blobs", "sha256"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, d.Name())
		}
		return nil
	})
	return out
}

// mirrorSetup is a publisher home with origin (git daemon, file bucket)
// and a mirror (git http-backend, S3 bucket) as remotes.
type mirrorSetup struct {
	home           string
	origin, mirror *gitServer
	srcDir, dstDir string // file buckets ("" for S3)
	dstBlobs       string
}

func newMirrorSetup(t *testing.T, s3 bool) *mirrorSetup {
	m := &mirrorSetup{home: t.TempDir(), origin: startGitDaemon(t), mirror: startGitHTTP(t)}
	var srcURL string
	srcURL, m.srcDir = fileBucket(t)
	if s3 {
		m.dstBlobs = castest.StartS3(t)
	} else {
		m.dstBlobs, m.dstDir = fileBucket(t)
	}
	mustOpm(t, m.home, "remote", "add", "origin", "--meta", m.origin.repo(t, "meta.git"), "--blobs", srcURL)
	mustOpm(t, m.home, "remote", "add", "mirror", "--meta", m.mirror.repo(t, "meta.git"), "--blobs", m.dstBlobs)
	return m
}

type syncResult struct {
	Mode    string   `json:"mode"`
	Tags    []string `json:"tags"`
	Blobs   int      `json:"blobs"`
	Copied  int      `json:"copied"`
	Present int      `json:"present"`
	Bytes   int64    `json:"bytes"`
	Failed  []struct {
		Tag string `json:"tag"`
	} `json:"failed"`
	DstAfter string `json:"dst_after"`
}

func parseSync(t *testing.T, r run) syncResult {
	t.Helper()
	var res syncResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("sync --json: %v\n%s\n%s", err, r.stdout, r.stderr)
	}
	return res
}

// A mirror copies origin: same commits, every blob verified at the mirror's
// bucket, and a reader of the mirror gets the same files.
func TestSyncMirror(t *testing.T) {
	m := newMirrorSetup(t, true)
	v1, v2 := pkgDir(t, 3, 4, 3000), pkgDir(t, 4, 2, 2000)
	mustOpm(t, m.home, "push", "acme/web/site:v1", v1)
	mustOpm(t, m.home, "push", "acme/tools/cli:v1", v2)

	dry := mustOpm(t, m.home, "sync", "origin", "mirror", "--dry-run")
	if strings.Count(dry.stdout, "copy sha256:") != 7 || m.mirror.head(t, "meta.git") != "" {
		t.Fatalf("dry run: %s / mirror at %q", dry.stdout, m.mirror.head(t, "meta.git"))
	}
	res := parseSync(t, mustOpm(t, m.home, "sync", "origin", "mirror", "--json"))
	if res.Mode != "fast-forward" || res.Copied != 7 || len(res.Tags) != 2 {
		t.Fatalf("first mirror: %+v", res)
	}
	if a, b := m.origin.head(t, "meta.git"), m.mirror.head(t, "meta.git"); a != b {
		t.Fatalf("commits not preserved: origin %s, mirror %s", a, b)
	}
	res = parseSync(t, mustOpm(t, m.home, "sync", "origin", "mirror", "--json"))
	if res.Mode != "up-to-date" || res.Copied != 0 {
		t.Fatalf("second mirror: %+v", res)
	}
	// One more tag: only its blobs move.
	v3 := pkgDir(t, 5, 1, 100)
	mustOpm(t, m.home, "push", "acme/web/site:v2", v3)
	res = parseSync(t, mustOpm(t, m.home, "sync", "origin", "mirror", "--json"))
	if res.Copied != 1 || len(res.Tags) != 1 {
		t.Fatalf("incremental mirror: %+v", res)
	}

	// A reader of the mirror.
	reader := t.TempDir()
	mustOpm(t, reader, "remote", "add", "origin", "--meta", m.mirror.url+"/meta.git", "--blobs", m.dstBlobs)
	mustOpm(t, reader, "sync")
	samePackage(t, reader, "acme/web/site:v1", v1)
	samePackage(t, reader, "acme/tools/cli:v1", v2)

	// Someone pushes to the mirror: it diverged, refused unless --force.
	mustOpm(t, reader, "push", "acme/web/rogue:v1", v3)
	mustOpm(t, m.home, "push", "acme/web/site:v3", v1)
	wantCode(t, syncOpm(t, m.home, "sync", "origin", "mirror"), 4, "--force")
	mustOpm(t, m.home, "sync", "origin", "mirror", "--force")
	if a, b := m.origin.head(t, "meta.git"), m.mirror.head(t, "meta.git"); a != b {
		t.Fatalf("after --force: origin %s, mirror %s", a, b)
	}

	// Forgetting the mirror removes its scratch repository.
	scratch := filepath.Join(m.home, "mirrors", "mirror.git")
	if !exists(scratch) {
		t.Fatalf("no scratch repository at %s", scratch)
	}
	mustOpm(t, m.home, "remote", "rm", "mirror")
	if exists(scratch) {
		t.Fatalf("opm remote rm mirror left %s", scratch)
	}
}

// Two publishers race for origin: a pre-receive hook lets the second land
// while the first one's push is in flight. Different tags both land; the
// same tag is a real conflict (exit 4) unless --force.
func TestSyncPushRace(t *testing.T) {
	srv := startGitDaemon(t)
	meta := srv.repo(t, "origin.git")
	blobs, _ := fileBucket(t)
	a, b := t.TempDir(), t.TempDir()
	for _, h := range []string{a, b} {
		mustOpm(t, h, "remote", "add", "origin", "--meta", meta, "--blobs", blobs)
	}
	v1, v2 := pkgDir(t, 6, 1, 100), pkgDir(t, 7, 1, 100)
	mustOpm(t, a, "push", "acme/web/base:v1", v1)

	// While A's push is received, B pushes (once: the hook removes its marker).
	marker := filepath.Join(t.TempDir(), "race")
	hook := filepath.Join(srv.dir, "origin.git", "hooks", "pre-receive")
	raceWith := func(ref string) {
		script := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\nif rm %q 2>/dev/null; then\n  unset GIT_DIR GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n  OPM_HOME=%q GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@example.org %q push %s %q >&2 || exit 1\nfi\nexit 0\n",
			marker, b, opmBin, ref, v2)
		if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Different tags: both land.
	raceWith("acme/web/b:v1")
	mustOpm(t, a, "push", "acme/web/a:v1", v1)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the hook did not run")
	}
	reader := t.TempDir()
	mustOpm(t, reader, "remote", "add", "origin", "--meta", meta, "--blobs", blobs)
	mustOpm(t, reader, "sync")
	ls := mustOpm(t, reader, "ls", "acme/web")
	for _, want := range []string{"a", "b", "base"} {
		if !strings.Contains(ls.stdout, want) {
			t.Fatalf("origin lacks acme/web/%s after the race:\n%s", want, ls.stdout)
		}
	}

	// The same tag: a real conflict, exit 4; origin keeps B's.
	raceWith("acme/web/same:v1")
	wantCode(t, syncOpm(t, a, "push", "acme/web/same:v1", v1), 4, "changed on origin by another writer")
	mustOpm(t, reader, "sync")
	samePackage(t, reader, "acme/web/same:v1", v2)

	// With --force A's replaces it.
	raceWith("acme/web/same2:v1")
	mustOpm(t, a, "push", "acme/web/same2:v1", v1, "--force")
	mustOpm(t, reader, "sync")
	samePackage(t, reader, "acme/web/same2:v1", v1)
}

// A blob corrupted in the source bucket aborts its tag: nothing of it
// reaches the mirror. A preserving mirror then publishes nothing; a
// filtered one publishes the other tags.
func TestSyncCorruptSourceBlob(t *testing.T) {
	m := newMirrorSetup(t, false)
	good, bad := pkgDir(t, 8, 2, 1000), pkgDir(t, 9, 1, 1000)
	mustOpm(t, m.home, "push", "acme/web/good:v1", good)
	mustOpm(t, m.home, "push", "acme/web/bad:v1", bad)
	// Corrupt bad's one file in origin's bucket (same size).
	files := mustOpm(t, m.home, "files", "acme/web/bad:v1", "--json").stdout
	i := strings.Index(files, "sha256:")
	hex := files[i+7 : i+71]
	p := filepath.Join(m.srcDir, "blobs", "sha256", hex)
	os.Chmod(p, 0o644)
	body, _ := os.ReadFile(p)
	body[0] ^= 0xff
	if err := os.WriteFile(p, body, 0o644); err != nil {
		t.Fatal(err)
	}

	r := syncOpm(t, m.home, "sync", "origin", "mirror")
	wantCode(t, r, 5, "acme/web/bad:v1")
	if m.mirror.head(t, "meta.git") != "" {
		t.Fatal("a preserving mirror published commits naming a corrupt blob")
	}
	if bucketBlobs(t, m.dstDir)[hex] {
		t.Fatal("the corrupt blob reached the mirror's bucket")
	}

	r = syncOpm(t, m.home, "sync", "origin", "mirror", "--include", "acme/*/*", "--json")
	if r.code != 5 {
		t.Fatalf("filtered mirror with a corrupt blob: exit %d %s", r.code, r.stderr)
	}
	res := parseSync(t, r)
	if len(res.Tags) != 1 || res.Tags[0] != "acme/web/good:v1" || len(res.Failed) != 1 {
		t.Fatalf("filtered mirror: %+v", res)
	}
	reader := t.TempDir()
	mustOpm(t, reader, "remote", "add", "origin", "--meta", m.mirror.url+"/meta.git", "--blobs", m.dstBlobs)
	mustOpm(t, reader, "sync")
	samePackage(t, reader, "acme/web/good:v1", good)
	wantCode(t, syncOpm(t, reader, "files", "acme/web/bad:v1"), 3, "acme/web/bad: no such repository")
}

// A sync SIGKILLed while copying leaves the mirror as it was; the next one
// completes and copies none of what arrived again.
func TestSyncKilledAndResumed(t *testing.T) {
	// The kill must land while the sync copies. A sync that finished
	// first (a fast machine) proves nothing: the scenario is run again,
	// on a fresh setup, with twice the blobs; the test fails if the kill
	// never lands in time.
	const attempts = 4
	n := 600
	for attempt := 1; !syncKilledAndResumed(t, n); attempt++ {
		if attempt == attempts {
			t.Fatalf("in %d attempts (up to %d blobs) the sync always finished before it could be killed", attempts, n)
		}
		n *= 2
	}
}

// syncKilledAndResumed runs the scenario of TestSyncKilledAndResumed once,
// with a package of n files, and reports whether the kill landed before the
// sync finished (if not, nothing was checked).
func syncKilledAndResumed(t *testing.T, n int) bool {
	t.Helper()
	m := newMirrorSetup(t, false)
	mustOpm(t, m.home, "push", "acme/data/set:v1", pkgDir(t, 10, n, 2000))
	cmd := exec.Command(opmBin, "sync", "origin", "mirror", "--jobs", "1")
	cmd.Env = append(os.Environ(), "OPM_HOME="+m.home)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // when the test failed before the kill
		cmd.Wait()
	})
	opmtest.Eventually(t, "the sync to copy 50 blobs to the mirror's bucket", func() error {
		if got := len(bucketBlobs(t, m.dstDir)); got < 50 {
			return fmt.Errorf("%d blobs copied", got)
		}
		return nil
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	arrived := len(bucketBlobs(t, m.dstDir))
	if arrived >= n+1 {
		t.Logf("the sync finished (%d blobs) before it could be killed: trying again with %d files", arrived, 2*n)
		return false
	}
	if m.mirror.head(t, "meta.git") != "" {
		t.Fatal("the killed sync published metadata before its blobs")
	}
	res := parseSync(t, mustOpm(t, m.home, "sync", "origin", "mirror", "--json"))
	if res.Present != arrived || res.Copied != res.Blobs-arrived {
		t.Fatalf("resumed: %d blobs were there, result %+v", arrived, res)
	}
	if a, b := m.origin.head(t, "meta.git"), m.mirror.head(t, "meta.git"); a != b {
		t.Fatalf("after resume: origin %s, mirror %s", a, b)
	}
	return true
}

// A filtered mirror carries only the selected tags, in new commits with
// Opm-Synced-From trailers; later syncs add what changed.
func TestSyncFilteredMirror(t *testing.T) {
	m := newMirrorSetup(t, false)
	v := pkgDir(t, 11, 1, 500)
	mustOpm(t, m.home, "push", "acme/web/site:v1", v)
	mustOpm(t, m.home, "push", "acme/web/site:v2-rc", pkgDir(t, 12, 1, 500))
	mustOpm(t, m.home, "push", "other/x/y:v1", pkgDir(t, 13, 1, 500))

	res := parseSync(t, mustOpm(t, m.home, "sync", "origin", "mirror", "--include", "acme/*/*", "--exclude", "*/*/*:*-rc", "--json"))
	if res.Mode != "filtered" || len(res.Tags) != 1 || res.Tags[0] != "acme/web/site:v1" {
		t.Fatalf("filtered mirror: %+v", res)
	}
	mirrorGit := filepath.Join(m.mirror.dir, "meta.git")
	log := git(t, "-C", mirrorGit, "log", "--format=%B", "main")
	src := m.origin.head(t, "meta.git")
	if !strings.Contains(log, "Opm-Synced-From: ") || !strings.Contains(log, "@"+src) {
		t.Fatalf("no Opm-Synced-From trailer naming %s:\n%s", src, log)
	}
	files := git(t, "-C", mirrorGit, "ls-tree", "-r", "--name-only", "main")
	if strings.TrimSpace(files) != "acme/web/site/tags/v1.json" {
		t.Fatalf("mirror holds:\n%s", files)
	}
	// Up to date, then one new selected tag.
	res = parseSync(t, mustOpm(t, m.home, "sync", "origin", "mirror", "--include", "acme/*/*", "--exclude", "*/*/*:*-rc", "--json"))
	if res.Mode != "up-to-date" {
		t.Fatalf("second filtered sync: %+v", res)
	}
	mustOpm(t, m.home, "push", "acme/web/site:v3", v)
	res = parseSync(t, mustOpm(t, m.home, "sync", "origin", "mirror", "--include", "acme/*/*", "--exclude", "*/*/*:*-rc", "--json"))
	if len(res.Tags) != 1 || res.Tags[0] != "acme/web/site:v3" || res.Copied != 0 {
		t.Fatalf("third filtered sync: %+v", res)
	}
	if n := strings.Count(git(t, "-C", mirrorGit, "rev-list", "main"), "\n"); n != 2 {
		t.Fatalf("mirror has %d commits, want 2", n)
	}
}

// A mounted reader follows origin by itself (opm mount --sync-interval),
// and an explicit opm sync, carried out by its daemon, shows in the mount.
func TestSyncMountFollows(t *testing.T) {
	opmtest.RequireFUSE(t)
	srv := startGitDaemon(t)
	meta := srv.repo(t, "origin.git")
	blobs := castest.StartS3(t)
	pub, reader := t.TempDir(), t.TempDir()
	mustOpm(t, pub, "remote", "add", "origin", "--meta", meta, "--blobs", blobs)
	mustOpm(t, reader, "remote", "add", "origin", "--meta", meta, "--blobs", blobs)
	v1 := pkgDir(t, 20, 2, 4000)
	mustOpm(t, pub, "push", "acme/web/site:v1", v1)

	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() { unmountAndWait(t, reader, mnt) })
	opmOK(t, reader, nil, "mount", "--daemon", "--sync-interval", "200ms", mnt)

	opmtest.Eventually(t, "v1 to show in the mount", appears(filepath.Join(mnt, "acme/web/site/v1/f000.bin")))
	if out, err := exec.Command("diff", "-r", v1, filepath.Join(mnt, "acme/web/site/v1")).CombinedOutput(); err != nil {
		t.Fatalf("mount differs from the pushed files: %s", out)
	}
	v2 := pkgDir(t, 21, 1, 100)
	mustOpm(t, pub, "push", "acme/web/site:v2", v2)
	opmtest.Eventually(t, "v2 to show in the mount (followed by the daemon)", appears(filepath.Join(mnt, "acme/web/site/v2/f000.bin")))

	// An explicit sync goes through the daemon; the mount shows it (the
	// promise is within a second; the test waits for it, it does not time it).
	mustOpm(t, pub, "push", "acme/web/site:v3", v2)
	mustOpm(t, reader, "sync")
	opmtest.Eventually(t, "v3 to show in the mount after opm sync", appears(filepath.Join(mnt, "acme/web/site/v3/f000.bin")))
}

// TestTagAndRmPublish: in a home with an origin, opm tag and opm rm publish
// their commit to origin as opm push does — the blobs a tag names go to
// origin's bucket first, also those of a package pushed before the origin
// was added — so a follower sees a promotion to stable, and its removal,
// at its next sync. (They committed locally only, until the next push.)
func TestTagAndRmPublish(t *testing.T) {
	home, follower, dir := t.TempDir(), t.TempDir(), t.TempDir()
	origin := filepath.Join(dir, "origin.git")
	git(t, "init", "-q", "--bare", origin)
	src := pkgDir(t, 94, 2, 1000)
	mustOpm(t, home, "push", "acme/web/early:v1", src) // before the origin: its blobs are local only
	mustOpm(t, home, "remote", "add", "origin", "--meta", origin, "--blobs", "file://"+dir+"/ob?create_dir=1")
	mustOpm(t, home, "tag", "acme/web/early:v1", "acme/web/site:stable")
	subjects := func() string {
		out, err := exec.Command("git", "-C", origin, "log", "--format=%s", "main").Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if s := subjects(); !strings.Contains(s, "tag acme/web/site:stable from acme/web/early:v1") || !strings.Contains(s, "push acme/web/early:v1") {
		t.Fatalf("origin after opm tag:\n%s", s)
	}
	if r := mustOpm(t, home, "sync"); strings.Contains(r.stderr, "not yet on origin") {
		t.Errorf("the publisher still has unpublished commits: %s", r.stderr)
	}
	mustOpm(t, follower, "remote", "add", "origin", "--meta", origin, "--blobs", "file://"+dir+"/ob")
	mustOpm(t, follower, "sync")
	out := filepath.Join(t.TempDir(), "out")
	mustOpm(t, follower, "pull", "acme/web/site:stable", "-o", out) // its blobs were uploaded first
	samePackage(t, follower, "acme/web/site:stable", src)

	mustOpm(t, home, "rm", "acme/web/site:stable")
	if s := subjects(); !strings.Contains(s, "rm acme/web/site:stable") {
		t.Fatalf("origin after opm rm:\n%s", s)
	}
	mustOpm(t, follower, "sync")
	wantCode(t, syncOpm(t, follower, "files", "acme/web/site:stable"), 3, "acme/web/site: no such repository") // its only tag went
}
