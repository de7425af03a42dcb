package integration

// End-to-end tests of opm on every kind of cloud bucket, each a real
// server on loopback: SeaweedFS (s3://), fake-gcs-server (gs://) and
// Azurite (azblob://).

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/faultproxy"
)

// startClouds starts one server of each kind and sets the test's
// environment (inherited by the opm processes it runs) to reach all three.
func startClouds(t *testing.T) map[string]*castest.Server {
	t.Helper()
	out := map[string]*castest.Server{}
	for _, kind := range []string{"s3", "gs", "azblob"} {
		out[kind] = castest.StartServer(t, kind)
		out[kind].SetEnv(t)
	}
	t.Setenv("OPM_RETRY_ATTEMPTS", "2")
	return out
}

// A registry published to S3 is mirrored into Google Cloud Storage, and that
// mirror into Azure, each with its own git origin; opm fsck --remote --read-data
// checks every end, commits are the same at every end, and a reader of the
// last one gets the same files.
func TestCrossKindMirror(t *testing.T) {
	clouds := startClouds(t)
	git := startGitDaemon(t)
	home := t.TempDir()
	names := []string{"origin", "gcs", "azure"}
	for i, kind := range []string{"s3", "gs", "azblob"} {
		mustOpm(t, home, "remote", "add", names[i], "--meta", git.repo(t, names[i]+".git"), "--blobs", clouds[kind].NewBucket(t))
	}
	v1, v2 := pkgDir(t, 21, 3, 200_000), pkgDir(t, 22, 2, 3000)
	mustOpm(t, home, "push", "acme/web/site:v1", v1)
	mustOpm(t, home, "push", "acme/tools/cli:v1", v2)

	blobs := 0 // 5 files, 2 manifests, the shared empty config: 6
	for i := 1; i < len(names); i++ {
		res := parseSync(t, mustOpm(t, home, "sync", names[i-1], names[i], "--json"))
		if i == 1 {
			blobs = res.Blobs
		}
		if res.Mode != "fast-forward" || res.Copied != 6 || res.Blobs != blobs || len(res.Tags) != 2 {
			t.Fatalf("mirror %s into %s: %+v", names[i-1], names[i], res)
		}
		if res := parseSync(t, mustOpm(t, home, "sync", names[i-1], names[i], "--json")); res.Copied != 0 {
			t.Fatalf("second mirror %s into %s copied %d", names[i-1], names[i], res.Copied)
		}
	}
	for _, n := range names {
		if got, want := git.head(t, n+".git"), git.head(t, "origin.git"); got != want {
			t.Errorf("%s is at %s, origin at %s", n, got, want)
		}
		rep, code := runFsck(t, home, "--remote", n, "--read-data")
		if code != 0 || rep.Tags != 2 || rep.Blobs != blobs || rep.BytesVerified < 600_000 {
			t.Errorf("opm fsck --remote %s --read-data: exit %d, %+v", n, code, rep)
		}
	}

	reader := t.TempDir()
	mustOpm(t, reader, "remote", "add", "origin", "--meta", git.url+"/azure.git", "--blobs", clouds["azblob"].URL("opm-1", clouds["azblob"].Addr))
	mustOpm(t, reader, "sync")
	samePackage(t, reader, "acme/web/site:v1", v1)
	samePackage(t, reader, "acme/tools/cli:v1", v2)
}

// opm remote add refuses, in one line naming the bucket and the fix, a
// bucket URL it cannot use, and records nothing.
func TestRemoteAddBadBucket(t *testing.T) {
	clouds := startClouds(t)
	git := startGitDaemon(t)
	meta := git.repo(t, "meta.git")
	s3 := clouds["s3"].NewBucket(t)
	home := t.TempDir()
	for _, c := range []struct {
		blobs, bucket, says string
		code                int
	}{
		{"ftp://files.example.org/opm", "ftp://files.example.org/opm", "unknown scheme", 2},
		{strings.Replace(s3, "opm-", "nope-", 1), "s3://nope-1", "does not exist", 3},
		{clouds["gs"].URL("nope", ""), "gs://nope", "does not exist", 3},
		{clouds["azblob"].URL("nope", clouds["azblob"].Addr), "azblob://nope", "does not exist", 3},
		{s3 + "&profile=" + castest.S3WrongProfile, "s3://opm-1", "access denied", 9},
	} {
		r := syncOpm(t, home, "remote", "add", "origin", "--meta", meta, "--blobs", c.blobs)
		msg := strings.TrimSpace(r.stderr)
		if r.code != c.code || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, c.bucket) || !strings.Contains(msg, c.says) {
			t.Errorf("remote add --blobs %s: exit %d, %q; want exit %d and one line naming %s and saying %q", c.blobs, r.code, msg, c.code, c.bucket, c.says)
		}
		if ls := mustOpm(t, home, "remote", "ls"); strings.TrimSpace(ls.stdout) != "" {
			t.Fatalf("a refused remote was recorded: %s", ls.stdout)
		}
	}
	// Read-only credentials are enough for a reader.
	mustOpm(t, home, "remote", "add", "origin", "--meta", meta, "--blobs", s3+"&profile="+castest.S3ReaderProfile)
}

// transfer.jobs bounds the blobs a push sends at once, and is refused in
// one line when it is not a count.
func TestTransferJobs(t *testing.T) {
	proxy, blobs := faultproxy.StartS3(t)
	proxy.Set(faultproxy.Plan{Delay: 20 * time.Millisecond}) // so that uploads overlap
	home := t.TempDir()
	meta := filepath.Join(t.TempDir(), "origin.git")
	git(t, "init", "-q", "--bare", "--initial-branch=main", meta)
	mustOpm(t, home, "remote", "add", "origin", "--meta", meta, "--blobs", blobs)
	wantCode(t, syncOpm(t, home, "config", "transfer.jobs", "0"), 2, "want a count from 1 to 256")
	wantCode(t, syncOpm(t, home, "config", "transfer.jobs", "many"), 2, "transfer.jobs")
	// The proxy's maximum only grows: 1 first, then more.
	for i, jobs := range []int64{1, 6} {
		mustOpm(t, home, "config", "transfer.jobs", strconv.FormatInt(jobs, 10))
		mustOpm(t, home, "push", fmt.Sprintf("acme/jobs/pkg:v%d", i), pkgDir(t, uint64(70+i), 24, 1000))
		if got := proxy.MaxInFlight(); got > jobs || (jobs > 1 && got < 2) {
			t.Errorf("transfer.jobs %d: at most %d requests at once", jobs, got)
		}
	}
}
