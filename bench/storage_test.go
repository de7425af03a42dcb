package bench

// Benchmarks of bulk transfer against real storage servers on loopback
// (SeaweedFS for S3, fake-gcs-server, Azurite; cas/castest starts them),
// each against rclone doing the same job in the same run, with the same
// concurrency (opm's transfer.jobs default, 16; rclone --transfers 16):
//
//	go test -run '^$' -bench Storage -benchtime 1x ./bench/

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm/cas/castest"
)

// jobs is the concurrency of both sides.
const jobs = "16"

// bucketOf is the bucket (or container) name of a bucket URL.
func bucketOf(url string) string {
	_, rest, _ := strings.Cut(url, "://")
	name, _, _ := strings.Cut(rest, "?")
	return name
}

// rclone runs rclone with remotes named by the servers' kinds ("s3", and
// "s3b", a second name for the same server, so that a copy between two of
// its buckets goes through rclone, not the server's own copy; "gs";
// "azblob"), configured through the environment.
func rclone(b *testing.B, servers []*castest.Server, args ...string) {
	b.Helper()
	cmd := exec.Command("rclone", append([]string{"--config", "/dev/null", "--retries", "1"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") { // rclone 1.60 refuses plain-HTTP S3 with it set
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for _, s := range servers {
		switch s.Kind {
		case "s3":
			for _, name := range []string{"S3", "S3B"} {
				p := "RCLONE_CONFIG_" + name + "_"
				cmd.Env = append(cmd.Env, p+"TYPE=s3", p+"PROVIDER=SeaweedFS", p+"ENDPOINT=http://"+s.Addr,
					p+"ACCESS_KEY_ID="+envOf(s, "AWS_ACCESS_KEY_ID"), p+"SECRET_ACCESS_KEY="+envOf(s, "AWS_SECRET_ACCESS_KEY"),
					p+"REGION=us-east-1", p+"FORCE_PATH_STYLE=true")
			}
		case "gs":
			cmd.Env = append(cmd.Env, "RCLONE_CONFIG_GS_TYPE=google cloud storage", "RCLONE_CONFIG_GS_ANONYMOUS=true",
				"RCLONE_CONFIG_GS_ENDPOINT=http://"+s.Addr+"/storage/v1/")
		case "azblob":
			cmd.Env = append(cmd.Env, "RCLONE_CONFIG_AZBLOB_TYPE=azureblob", "RCLONE_CONFIG_AZBLOB_USE_EMULATOR=true",
				"RCLONE_CONFIG_AZBLOB_ENDPOINT=http://"+s.Addr+"/devstoreaccount1")
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("rclone %v: %v\n%s", args, err, out)
	}
}

// envOf is the value of one variable of s.Env().
func envOf(s *castest.Server, key string) string {
	for _, kv := range s.Env() {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// publisher makes a fresh home whose origin is a new bare git repository
// and bucket (a URL of s).
func publisher(b *testing.B, dir string, env []string, bucket string) string {
	b.Helper()
	home, meta := filepath.Join(dir, "home"), filepath.Join(dir, "meta.git")
	os.RemoveAll(home)
	os.RemoveAll(meta)
	run(b, nil, "git", "init", "-q", "--bare", "--initial-branch=main", meta)
	run(b, append(env, "OPM_HOME="+home), opmBin, "remote", "add", "origin", "--meta", meta, "--blobs", bucket)
	return home
}

// BenchmarkStoragePush50kFiles: opm push of a directory of 50,000 files of
// 6 KiB (300 MB in 50 directories) to an S3 origin (SeaweedFS) — hash, the
// local store, the upload and the metadata push — against rclone copy of
// the same directory into a bucket. A new bucket for each run of either.
func BenchmarkStoragePush50kFiles(b *testing.B) {
	s3 := castest.StartSeaweedFS(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	for i := range 50000 {
		writeRandom(b, filepath.Join(src, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%05d.bin", i)), 6<<10, uint64(i))
	}
	run(b, nil, "sync")
	var bucket, home string
	compare(b, "x-rclone",
		func() { bucket = s3.NewBucket(b) },
		func() {
			rclone(b, []*castest.Server{s3}, "copy", "--transfers", jobs, src, "s3:"+bucketOf(bucket)+"/tree")
		},
		func() { home = publisher(b, dir, s3.Env(), s3.NewBucket(b)); run(b, nil, "sync") },
		func() { run(b, append(s3.Env(), "OPM_HOME="+home), opmBin, "push", "bench/s3/files:v1", src) })
}

// BenchmarkStoragePush1GiB: opm push of one 1 GiB file to an S3 origin
// against rclone copyto of the file into a bucket. Page cache warm.
func BenchmarkStoragePush1GiB(b *testing.B) {
	s3 := castest.StartSeaweedFS(b)
	dir := b.TempDir()
	file := filepath.Join(dir, "big.bin")
	writeRandom(b, file, 1<<30, 3)
	run(b, nil, "cat", file)
	var bucket, home string
	compare(b, "x-rclone",
		func() { bucket = s3.NewBucket(b) },
		func() { rclone(b, []*castest.Server{s3}, "copyto", file, "s3:"+bucketOf(bucket)+"/big.bin") },
		func() { home = publisher(b, dir, s3.Env(), s3.NewBucket(b)); run(b, nil, "sync") },
		func() { run(b, append(s3.Env(), "OPM_HOME="+home), opmBin, "push", "bench/s3/big:v1", file) })
}

// syncJSON is the part of opm sync --json the benchmarks read.
type syncJSON struct {
	Copied         int   `json:"copied"`
	Present        int   `json:"present"`
	BucketRequests int64 `json:"bucket_requests"`
}

// opmSync runs opm sync with args and --json in home.
func opmSync(b *testing.B, env []string, home string, args ...string) syncJSON {
	b.Helper()
	cmd := exec.Command(opmBin, append(append([]string{"sync"}, args...), "--json")...)
	cmd.Env = append(append(os.Environ(), env...), "OPM_HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("opm sync %v: %v\n%s", args, err, out)
	}
	var res syncJSON
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("opm sync %v: %v\n%s", args, err, out)
	}
	return res
}

// BenchmarkStorageMirror50k: the first mirror of 50,000 blobs of 6 KiB
// (1000 tags of 50 blobs) from one SeaweedFS bucket into another (a new
// one each run, with a new git origin), against rclone copy between the
// two buckets; then a no-op sync of the same pair.
func BenchmarkStorageMirror50k(b *testing.B) {
	s3 := castest.StartSeaweedFS(b)
	dir := b.TempDir()
	env := s3.Env()
	home := filepath.Join(dir, "home")
	fileSrc := newSyncSource(b, dir, 1000, 50, 6<<10)
	srcMeta := filepath.Join(dir, "s3src.git")
	run(b, nil, "git", "init", "-q", "--bare", "--initial-branch=main", srcMeta)
	srcBucket := s3.NewBucket(b)
	run(b, append(env, "OPM_HOME="+home), opmBin, "remote", "add", "file", "--meta", fileSrc.meta, "--blobs", "file://"+fileSrc.bucket)
	run(b, append(env, "OPM_HOME="+home), opmBin, "remote", "add", "src", "--meta", srcMeta, "--blobs", srcBucket)
	if res := opmSync(b, env, home, "file", "src"); res.Copied != 50001 {
		b.Fatalf("setup: copied %d blobs into the source bucket, want 50001", res.Copied)
	}
	var dst string
	var res syncJSON
	round := 0
	compare(b, "x-rclone",
		func() { dst = s3.NewBucket(b) },
		func() {
			rclone(b, []*castest.Server{s3}, "copy", "--transfers", jobs, "s3:"+bucketOf(srcBucket), "s3b:"+bucketOf(dst))
		},
		func() {
			round++
			meta := filepath.Join(dir, fmt.Sprintf("dst%d.git", round))
			run(b, nil, "git", "init", "-q", "--bare", "--initial-branch=main", meta)
			run(b, append(env, "OPM_HOME="+home), opmBin, "remote", "add", fmt.Sprint("dst", round), "--meta", meta, "--blobs", s3.NewBucket(b))
		},
		func() { res = opmSync(b, env, home, "src", fmt.Sprint("dst", round)) })
	if res.Copied != 50001 {
		b.Fatalf("copied %d blobs, want 50001", res.Copied)
	}
	noop := timed(nil, func() { res = opmSync(b, env, home, "src", fmt.Sprint("dst", round)) })
	b.ReportMetric(noop.Seconds(), "noop-s")
	b.ReportMetric(float64(res.BucketRequests), "noop-bucket-requests")
	b.Logf("no-op sync: %v, %d bucket requests", noop, res.BucketRequests)
}

// BenchmarkStorageMirrorKinds: the first mirror of 10,000 blobs of 6 KiB
// (200 tags of 50) across kinds — SeaweedFS (S3) into fake-gcs-server (GCS),
// then that GCS registry into Azurite (Azure) — each against rclone copy
// between the same two buckets, with the same concurrency.
func BenchmarkStorageMirrorKinds(b *testing.B) {
	servers := []*castest.Server{castest.StartSeaweedFS(b), castest.StartFakeGCS(b), castest.StartAzurite(b)}
	var env []string
	for _, s := range servers {
		env = append(env, s.Env()...)
	}
	dir := b.TempDir()
	home := filepath.Join(dir, "home")
	fileSrc := newSyncSource(b, dir, 200, 50, 6<<10)
	opmIn := func(args ...string) { run(b, append(env, "OPM_HOME="+home), opmBin, args...) }
	// newRemote adds a remote of a new git origin and a new bucket of s.
	n := 0
	newRemote := func(s *castest.Server) (name, bucket string) {
		n++
		name = fmt.Sprintf("%s%d", s.Kind, n)
		meta := filepath.Join(dir, name+".git")
		run(b, nil, "git", "init", "-q", "--bare", "--initial-branch=main", meta)
		bucket = s.NewBucket(b)
		opmIn("remote", "add", name, "--meta", meta, "--blobs", bucket)
		return name, bucket
	}
	opmIn("remote", "add", "file", "--meta", fileSrc.meta, "--blobs", "file://"+fileSrc.bucket)
	src, srcBucket := newRemote(servers[0])
	if res := opmSync(b, env, home, "file", src); res.Copied != 10001 {
		b.Fatalf("setup: copied %d blobs into the S3 bucket, want 10001", res.Copied)
	}
	for _, to := range servers[1:] {
		var dst, dstBucket string
		from := servers[0]
		if to.Kind == "azblob" {
			from = servers[1]
		}
		b.Run(from.Kind+"-to-"+to.Kind, func(b *testing.B) {
			var res syncJSON
			compare(b, "x-rclone",
				func() { dstBucket = to.NewBucket(b) },
				func() {
					rclone(b, servers, "copy", "--transfers", jobs, remoteName(from)+":"+bucketOf(srcBucket), to.Kind+":"+bucketOf(dstBucket))
				},
				func() { dst, dstBucket = newRemote(to) },
				func() { res = opmSync(b, env, home, src, dst) })
			if res.Copied != 10001 {
				b.Fatalf("copied %d blobs, want 10001", res.Copied)
			}
			b.ReportMetric(float64(res.BucketRequests), "bucket-requests")
		})
		src, srcBucket = dst, dstBucket // the next hop starts from this one
	}
}

// remoteName is rclone's remote for a server as a source ("s3b" for S3, so
// that a copy between two S3 buckets goes through rclone).
func remoteName(s *castest.Server) string {
	if s.Kind == "s3" {
		return "s3b"
	}
	return s.Kind
}
