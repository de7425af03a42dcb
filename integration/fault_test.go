package integration

// End-to-end fault tests: the real opm binary reads blobs from an
// S3-protocol server (gofakes3) through a fault-injecting proxy
// (internal/faultproxy) that answers 500/503, delays, cuts bodies short and
// flips bytes. A pull or a read in the mount returns correct bytes or fails
// with a clear error (EIO in the mount), never wrong bytes, and works again
// once the faults stop.

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openpm/opm/internal/faultproxy"
	"github.com/openpm/opm/internal/opmtest"
)

// faultSetup is a publisher that pushed through the proxy with no faults,
// and the metadata and bucket URL a follower needs.
type faultSetup struct {
	proxy *faultproxy.Proxy
	blobs string // s3:// URL through the proxy
	meta  string // the origin's bare metadata repository
	pub   string // the publisher's home
	pkgs  map[string]string
	bytes int64 // bytes compared against their source, for the FAULTS line
}

// newFaultSetup pushes one package per tag, each with its own content, so
// that every scenario reads blobs no home has fetched yet.
func newFaultSetup(t *testing.T, tags ...string) *faultSetup {
	t.Helper()
	s := newFaultOrigin(t, 5) // as many tries as by default
	for i, tag := range tags {
		src := pkgDir(t, uint64(60+i), 4, 64<<10)
		must(t, writeRandom(filepath.Join(src, "big.bin"), 1<<20, uint64(600+i)))
		mustOpm(t, s.pub, "push", "acme/fault/pkg:"+tag, src)
		s.pkgs[tag] = src
	}
	return s
}

// newFaultOrigin is a publisher's home with nothing pushed yet whose
// origin is a bare git repository and a bucket reached through the proxy;
// bucket reads are tried attempts times, with short waits that keep the
// tests fast.
func newFaultOrigin(t *testing.T, attempts int) *faultSetup {
	t.Helper()
	t.Setenv("OPM_RETRY_BASE", "1ms")
	t.Setenv("OPM_RETRY_MAX", "8ms")
	t.Setenv("OPM_RETRY_ATTEMPTS", strconv.Itoa(attempts))
	s := &faultSetup{pkgs: map[string]string{}}
	s.proxy, s.blobs = faultproxy.StartS3(t)
	s.meta = filepath.Join(t.TempDir(), "origin.git")
	git(t, "init", "-q", "--bare", "--initial-branch=main", s.meta)
	s.pub = t.TempDir()
	mustOpm(t, s.pub, "remote", "add", "origin", "--meta", s.meta, "--blobs", s.blobs)
	return s
}

// follower is a fresh home following the origin: metadata synced, no blob
// local.
func (s *faultSetup) follower(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	mustOpm(t, home, "remote", "add", "origin", "--meta", s.meta, "--blobs", s.blobs)
	mustOpm(t, home, "sync")
	if n := len(localBlobs(t, home)); n != 0 {
		t.Fatalf("follower has %d blobs after sync; they should stay lazy", n)
	}
	return home
}

// sameTree checks that every regular file of want is in got with the same
// sha256, and adds the bytes compared to s.bytes.
func (s *faultSetup) sameTree(t *testing.T, want, got string) {
	t.Helper()
	must(t, filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		if a, b := sha256File(t, p), sha256File(t, filepath.Join(got, rel)); a != b {
			t.Errorf("%s: sha256 %s, want %s", rel, b, a)
		}
		fi, _ := d.Info()
		s.bytes += fi.Size()
		return nil
	}))
}

// noWrongBytes checks that a failed pull left no temporary file and that
// every file it did write has its source's content.
func (s *faultSetup) noWrongBytes(t *testing.T, src, out string) {
	t.Helper()
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".opm-pull-") {
			t.Errorf("failed pull left a temporary file: %s", p)
			return nil
		}
		rel, _ := filepath.Rel(out, p)
		if sha256File(t, p) != sha256File(t, filepath.Join(src, rel)) {
			t.Errorf("failed pull left %s with wrong content", rel)
		}
		return nil
	})
}

// errorLine returns the one error line of a failed opm run; the other
// lines of stderr may only be the log of retries.
func errorLine(t *testing.T, r run) string {
	t.Helper()
	var line string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		switch {
		case strings.HasPrefix(l, "opm: "):
			if line != "" {
				t.Errorf("two error lines:\n%s", r.stderr)
			}
			line = l
		case strings.Contains(l, "bucket: retrying"), strings.Contains(l, "blob cache: remote blob failed verification"):
		default:
			t.Errorf("unexpected stderr line %q", l)
		}
	}
	if line == "" {
		t.Fatalf("no error line in stderr:\n%s", r.stderr)
	}
	return line
}

func TestFaultPull(t *testing.T) {
	s := newFaultSetup(t, "mixed", "corrupt", "errors", "cut")
	reader := s.follower(t)
	start := s.proxy.Stats()

	// Errors, cut and corrupted bodies and delays, one request in two:
	// retries hide them. (10 tries: a blob fails all of them one time in
	// 400; the pull fetches its blobs one after the other, so this seed
	// gives the same faults every run.)
	t.Setenv("OPM_RETRY_ATTEMPTS", "10")
	s.proxy.Set(faultproxy.Plan{Prefix: "blobs/", Error: 0.25, Truncate: 0.15, Corrupt: 0.15, Delay: time.Millisecond, Seed: 11})
	out := filepath.Join(t.TempDir(), "mixed")
	before := s.proxy.Stats()
	mustOpm(t, reader, "pull", "acme/fault/pkg:mixed", "-o", out)
	f := s.proxy.Stats().Sub(before)
	t.Logf("mixed: %v", f)
	if f.Errors == 0 || f.Truncated == 0 || f.Corrupted == 0 {
		t.Fatalf("the pull did not meet every kind of fault: %v", f)
	}
	s.sameTree(t, s.pkgs["mixed"], out)
	t.Setenv("OPM_RETRY_ATTEMPTS", "5")

	// Always failing, each way: a clear error, nothing wrong written, and
	// the same pull works once the faults stop.
	for _, c := range []struct {
		tag     string
		plan    faultproxy.Plan
		code    int
		message string
	}{
		{"corrupt", faultproxy.Plan{Corrupt: 1, Seed: 1}, 5, "content hashes to"},
		{"errors", faultproxy.Plan{Error: 1, Seed: 2}, 1, "failed after 5 attempts"},
		{"cut", faultproxy.Plan{Truncate: 1, Seed: 3}, 1, "unexpected EOF"},
	} {
		c.plan.Prefix = "blobs/"
		s.proxy.Set(c.plan)
		out := filepath.Join(t.TempDir(), c.tag)
		before := s.proxy.Stats()
		r := syncOpm(t, reader, "pull", "acme/fault/pkg:"+c.tag, "-o", out)
		f := s.proxy.Stats().Sub(before)
		line := errorLine(t, r)
		if r.code != c.code || !strings.Contains(line, c.message) || !strings.Contains(line, "after 5 attempts") {
			t.Errorf("%s: exit %d, %q; want exit %d and %q after 5 attempts", c.tag, r.code, line, c.code, c.message)
		}
		// Files are pulled in parallel: each blob fetched is tried at
		// most 5 times, and the first to fail all 5 stops the rest.
		entries, err := os.ReadDir(s.pkgs[c.tag])
		must(t, err)
		if f.Faults() < 5 || f.Faults() > int64(5*len(entries)) {
			t.Errorf("%s: %v; want 5 to %d faults: 5 tries of at least one blob, at most of each of the %d", c.tag, f, 5*len(entries), len(entries))
		}
		t.Logf("%s: exit %d: %s", c.tag, r.code, line)
		s.noWrongBytes(t, s.pkgs[c.tag], out)

		s.proxy.Off()
		mustOpm(t, reader, "pull", "acme/fault/pkg:"+c.tag, "-o", out, "--force")
		s.sameTree(t, s.pkgs[c.tag], out)
	}

	// Whatever the faults, the follower's store holds only right bytes.
	n, bad, err := verifyBlobDir(filepath.Join(reader, "blobs"))
	must(t, err)
	if len(bad) > 0 {
		t.Fatalf("blob files with wrong content: %v", bad)
	}
	t.Logf("FAULTS: test=TestFaultPull %v bytes_verified=%d blobs=%d", s.proxy.Stats().Sub(start), s.bytes, n)
}

func TestFaultMount(t *testing.T) {
	opmtest.RequireFUSE(t)
	s := newFaultSetup(t, "v1")
	reader := s.follower(t)
	mnt := mountDaemon(t, reader)
	pkg := filepath.Join(mnt, "acme/fault/pkg/v1")
	start := s.proxy.Stats()

	// Listing and stat need no blob: they work under any fault.
	s.proxy.Set(faultproxy.Plan{Error: 1, Prefix: "blobs/"})
	entries, err := os.ReadDir(pkg)
	if err != nil || len(entries) != 5 {
		t.Fatalf("ls under faults: %d entries, %v", len(entries), err)
	}

	// Every fault at 100%: EIO, never bytes.
	for i, plan := range []faultproxy.Plan{
		{Error: 1, Seed: 1},
		{Corrupt: 1, Seed: 2},
		{Truncate: 1, Seed: 3},
	} {
		plan.Prefix = "blobs/"
		s.proxy.Set(plan)
		before := s.proxy.Stats()
		for _, name := range []string{"f000.bin", "big.bin"} {
			b, err := os.ReadFile(filepath.Join(pkg, name))
			if !errors.Is(err, syscall.EIO) || len(b) != 0 {
				t.Errorf("plan %d: read %s: %d bytes, %v; want EIO and no bytes", i, name, len(b), err)
			}
		}
		if f := s.proxy.Stats().Sub(before); f.Faults() < 10 {
			t.Errorf("plan %d: %v; want 5 tries per file, all faulted", i, f)
		}
	}

	// A moderate rate of every fault: retries hide them.
	s.proxy.Set(faultproxy.Plan{Prefix: "blobs/", Error: 0.15, Truncate: 0.1, Corrupt: 0.1, Seed: 21})
	before := s.proxy.Stats()
	for _, name := range []string{"f000.bin", "big.bin"} {
		if got, want := sha256File(t, filepath.Join(pkg, name)), sha256File(t, filepath.Join(s.pkgs["v1"], name)); got != want {
			t.Fatalf("%s under moderate faults: sha256 %s, want %s", name, got, want)
		}
		fi, err := os.Stat(filepath.Join(pkg, name))
		must(t, err)
		s.bytes += fi.Size()
	}
	t.Logf("moderate: %v", s.proxy.Stats().Sub(before))

	// Faults off: the same paths read their right bytes.
	s.proxy.Off()
	s.sameTree(t, s.pkgs["v1"], pkg)
	if st := mountStatus(t, mnt); st.Errors < 6 {
		t.Errorf("mount status counts %d errors, want at least 6", st.Errors)
	}
	unmountAndWait(t, reader, mnt)
	_, bad, err := verifyBlobDir(filepath.Join(reader, "blobs"))
	must(t, err)
	if len(bad) > 0 {
		t.Fatalf("blob files with wrong content: %v", bad)
	}
	if log, _ := os.ReadFile(filepath.Join(reader, "opm.log")); !strings.Contains(string(log), "bucket: retrying") {
		t.Errorf("the daemon's log shows no retry:\n%.2000s", log)
	}
	t.Logf("FAULTS: test=TestFaultMount %v bytes_verified=%d", s.proxy.Stats().Sub(start), s.bytes)
}

func TestFaultPush(t *testing.T) {
	s := newFaultSetup(t)
	start := s.proxy.Stats()

	// Every second existence check fails (of files big enough to be looked
	// up before they are sent: cas.Bucket.Put), then every second upload:
	// the push retries through, and a follower reads what it pushed.
	src := pkgDir(t, 70, 4, 320<<10)
	for _, method := range []string{"HEAD", "PUT"} {
		s.proxy.Set(faultproxy.Plan{Prefix: "blobs/", Method: method, Error: 1, Every: 2})
		before := s.proxy.Stats()
		mustOpm(t, s.pub, "push", "acme/fault/pkg:v1-"+strings.ToLower(method), src)
		if f := s.proxy.Stats().Sub(before); f.Errors < 2 {
			t.Fatalf("push met %v; want an error on every second %s", f, method)
		}
		if method == "HEAD" {
			src = pkgDir(t, 80, 4, 64<<10) // new blobs, to be uploaded
		}
	}
	s.proxy.Off()
	reader := s.follower(t)
	out := filepath.Join(t.TempDir(), "v1")
	mustOpm(t, reader, "pull", "acme/fault/pkg:v1-put", "-o", out)
	s.sameTree(t, src, out)

	// Every upload fails: the push fails clearly after 5 tries and commits
	// no tag; once the bucket works it goes through.
	src2 := pkgDir(t, 71, 2, 10<<10)
	s.proxy.Set(faultproxy.Plan{Prefix: "blobs/", Method: "PUT", Error: 1})
	before := s.proxy.Stats()
	r := syncOpm(t, s.pub, "push", "acme/fault/pkg:v2", src2)
	line := errorLine(t, r)
	t.Logf("push under failing uploads: exit %d: %s", r.code, line)
	if r.code != 1 || !strings.Contains(line, "upload") || !strings.Contains(line, "after 5 attempts") {
		t.Fatalf("push under failing uploads: exit %d, %q; want exit 1 after 5 attempts", r.code, line)
	}
	// Uploads run in parallel and the first to give up cancels the others.
	if f := s.proxy.Stats().Sub(before); f.Errors < 5 {
		t.Errorf("%v; want at least the 5 tries of one upload", f)
	}
	if r := syncOpm(t, s.pub, "ls", "acme/fault/pkg"); strings.Contains(r.stdout, "v2") {
		t.Fatalf("a tag was committed although its blobs did not reach the bucket:\n%s", r.stdout)
	}
	if n := strings.TrimSpace(git(t, "-C", s.meta, "rev-list", "--count", "main")); n != "2" {
		t.Fatalf("the origin has %s commits after the failed push, want 2", n)
	}
	s.proxy.Off()
	mustOpm(t, s.pub, "push", "acme/fault/pkg:v2", src2)
	mustOpm(t, reader, "sync")
	out2 := filepath.Join(t.TempDir(), "v2")
	mustOpm(t, reader, "pull", "acme/fault/pkg:v2", "-o", out2)
	s.sameTree(t, src2, out2)

	// A push of new small files sends each in one request, a PUT with no
	// HEAD before it; the blobs it shares with v2 (its config, and one file
	// pushed again) cost one refused PUT each.
	src3 := pkgDir(t, 72, 6, 10<<10)
	again, err := os.ReadFile(filepath.Join(src2, "f000.bin"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(src3, "again.bin"), again, 0o644))
	from := len(s.proxy.Requests())
	mustOpm(t, s.pub, "push", "acme/fault/pkg:v3", src3)
	methods := map[string]int{}
	for _, q := range s.proxy.Requests()[from:] {
		if strings.HasPrefix(q.Key, "blobs/") {
			methods[q.Method]++
		}
	}
	if want := map[string]int{"PUT": 6 + 1 + 1}; !maps.Equal(methods, want) {
		t.Errorf("push of 6 new small files and 2 blobs the bucket has: blob requests %v, want %v", methods, want)
	}
	t.Logf("FAULTS: test=TestFaultPush %v bytes_verified=%d", s.proxy.Stats().Sub(start), s.bytes)
}
