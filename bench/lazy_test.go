package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/faultproxy"
)

// slowBucket is the slow-bucket plan of the streaming issue: 20 ms before
// every answer, 200 MB/s for all of them together.
var slowBucket = faultproxy.Plan{Prefix: "blobs/", Delay: 20 * time.Millisecond, Bandwidth: 200e6}

// lazyReader is a home following a publisher whose bucket it reaches only
// through the slow proxy, and the files the publisher pushed.
type lazyReader struct {
	home, mnt string
	env       []string
	proxy     *faultproxy.Proxy
	bucket    *cas.Bucket // the same bucket through the proxy, for the baselines
	files     map[string]digest.Digest
}

// newLazyReader pushes one file of each size (tag = name) to a SeaweedFS
// bucket and makes a reader of it behind the slow proxy.
func newLazyReader(b *testing.B, sizes map[string]int64) *lazyReader {
	b.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skipf("no FUSE: %v", err)
	}
	srv := castest.StartSeaweedFS(b)
	direct := srv.NewBucket(b)
	proxy, err := faultproxy.New("http://" + srv.Addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(proxy.Close)
	slow := srv.URL(bucketOf(direct), strings.TrimPrefix(proxy.URL, "http://"))
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	dir := b.TempDir()
	pub := publisher(b, filepath.Join(dir, "pub"), nil, direct)
	l := &lazyReader{home: filepath.Join(dir, "reader"), mnt: filepath.Join(dir, "mnt"), proxy: proxy, files: map[string]digest.Digest{}}
	l.env = []string{"OPM_HOME=" + l.home}
	for tag, size := range sizes {
		src := filepath.Join(dir, tag+".bin")
		writeRandom(b, src, size, uint64(size))
		run(b, []string{"OPM_HOME=" + pub}, opmBin, "push", "bench/lazy/big:"+tag, src)
		os.Remove(src)
		var files []struct {
			Digest digest.Digest `json:"digest"`
		}
		out, err := runOut([]string{"OPM_HOME=" + pub}, opmBin, "files", "bench/lazy/big:"+tag, "--json")
		if err != nil || json.Unmarshal(out, &files) != nil || len(files) != 1 {
			b.Fatalf("opm files: %v %s", err, out)
		}
		l.files[tag] = files[0].Digest
	}
	os.RemoveAll(filepath.Join(pub, "blobs")) // the disk space of the big files
	run(b, l.env, opmBin, "remote", "add", "origin", "--meta", filepath.Join(dir, "pub/meta.git"), "--blobs", slow)
	run(b, l.env, opmBin, "sync")
	if l.bucket, err = cas.OpenBucket(context.Background(), slow); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.bucket.Close() })
	os.Mkdir(l.mnt, 0o755)
	unmountAtEnd(b, l.home, l.mnt)
	proxy.Set(slowBucket)
	return l
}

// runOut runs a command and returns its standard output.
func runOut(env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd.Output()
}

// fresh starts a fresh daemon with none of the big files local (neither
// whole nor in part) and the page cache dropped, and looks into the
// package directories (untimed: what is timed is the data path).
func (l *lazyReader) fresh(b *testing.B) {
	unmountAndWait(b, l.home, l.mnt)
	os.RemoveAll(filepath.Join(l.home, "blobs/partial"))
	for _, d := range l.files {
		os.Remove(filepath.Join(l.home, "blobs/sha256", cas.FanPath(d)))
	}
	dropCaches(b)
	run(b, l.env, opmBin, "mount", "--daemon", l.mnt)
	for tag := range l.files {
		if _, err := os.ReadDir(filepath.Join(l.mnt, "bench/lazy/big", tag)); err != nil {
			b.Fatal(err)
		}
	}
}

func (l *lazyReader) path(tag string) string {
	return filepath.Join(l.mnt, "bench/lazy/big", tag, tag+".bin")
}

// rangedGET reads n bytes at off of d with one ranged GET.
func (l *lazyReader) rangedGET(b *testing.B, d digest.Digest, off, n int64) {
	rc, err := l.bucket.OpenRange(context.Background(), d, off, n)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		b.Fatal(err)
	}
}

// parallelGET downloads d with ranged GETs of 4 MiB, jobs at a time.
func (l *lazyReader) parallelGET(b *testing.B, d digest.Digest, size int64, jobs int) {
	var wg sync.WaitGroup
	next := make(chan int64)
	for range jobs {
		wg.Go(func() {
			for off := range next {
				l.rangedGET(b, d, off, 4<<20)
			}
		})
	}
	for off := int64(0); off < size; off += 4 << 20 {
		next <- off
	}
	close(next)
	wg.Wait()
}

// busy runs fn and returns how busy the machine's CPUs were meanwhile, in
// percent of all of them (/proc/stat: all but idle and iowait).
func busy(fn func()) float64 {
	read := func() (total, idle float64) {
		st, _ := os.ReadFile("/proc/stat")
		line, _, _ := strings.Cut(string(st), "\n")
		for i, f := range strings.Fields(line)[1:] {
			var v float64
			fmt.Sscan(f, &v)
			total += v
			if i == 3 || i == 4 {
				idle += v
			}
		}
		return total, idle
	}
	t0, i0 := read()
	fn()
	t1, i1 := read()
	if t1 == t0 {
		return 0
	}
	return 100 * (1 - (i1-i0)/(t1-t0))
}

// BenchmarkMountLazy: streaming lazy reads (the streaming issue's goals).
// A 1 GiB and an 8 GiB file are pushed to an S3 bucket (SeaweedFS); a
// reader reads them through `opm mount --daemon` behind the slow-bucket
// proxy (20 ms before every answer, 200 MB/s shared), each round in a
// fresh daemon with nothing of them local:
//
//   - first-byte-1g, first-byte-8g: open and read of the first byte,
//     against one ranged GET of 4 KiB through the same proxy (goal ≤ 3×,
//     the same for both sizes);
//   - seq-8g: read of the whole 8 GiB file in 1 MiB reads, against a
//     download of the blob by 4 MiB ranged GETs, transfer.jobs (16) at a
//     time (goal: ≥ 0.8× its speed, a ratio of time ≤ 1.25×);
//   - random-8g: 100 random 4 KiB reads: the ranged GETs they cost (goal
//     ≤ 100), the slowest read against one ranged GET (goal ≤ 2×), and the
//     daemon's peak RSS above its idle one (goal < 100 MB).
func BenchmarkMountLazy(b *testing.B) {
	l := newLazyReader(b, map[string]int64{"1g": 1 << 30, "8g": 8 << 30})
	for _, tag := range []string{"1g", "8g"} {
		b.Run("first-byte-"+tag, func(b *testing.B) {
			compare(b, "x-ranged-get", nil, func() { l.rangedGET(b, l.files[tag], 0, 4096) },
				func() { l.fresh(b) }, func() {
					f, err := os.Open(l.path(tag))
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					if _, err := f.Read(make([]byte, 1)); err != nil {
						b.Fatal(err)
					}
				})
		})
	}
	b.Run("seq-8g", func(b *testing.B) {
		// How busy both cores were on each side (the proxy and SeaweedFS
		// run on them too): a side at 100% is bound by this machine.
		var baseBusy, opmBusy []float64
		compare(b, "x-parallel-get", nil, func() { baseBusy = append(baseBusy, busy(func() { l.parallelGET(b, l.files["8g"], 8<<30, 16) })) },
			func() { l.fresh(b) }, func() { opmBusy = append(opmBusy, busy(func() { readAll(b, l.path("8g")) })) })
		b.Logf("CPU busy: baseline %.0f%%, opm %.0f%%", baseBusy, opmBusy)
	})
	b.Run("random-8g", func(b *testing.B) {
		// One GET's latency: the median of 100 ranged GETs of 4 KiB at
		// random places; their slowest shows the bucket's own tail.
		var get []time.Duration
		rng := rand.New(rand.NewPCG(99, 13))
		for range 100 {
			off := rng.Int64N(8<<30-4096) &^ 4095
			get = append(get, timed(nil, func() { l.rangedGET(b, l.files["8g"], off, 4096) }))
		}
		oneGET := median(get)
		b.Logf("100 ranged GETs of 4 KiB: median %v, slowest %v (%.1fx)", oneGET, slices.Max(get), float64(slices.Max(get))/float64(oneGET))
		var fetches []int
		var worst, rss []float64
		for round := range rounds {
			l.fresh(b)
			var st opmfs.Status
			if body, err := os.ReadFile(filepath.Join(l.mnt, ".opm/status")); err != nil || json.Unmarshal(body, &st) != nil {
				b.Fatalf("status: %v %s", err, body)
			}
			idle := vmRSS(b, st.PID)
			before := len(l.proxy.Requests())
			f, err := os.Open(l.path("8g"))
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(round), 13))
			buf := make([]byte, 4096)
			var reads []time.Duration
			for range 100 {
				off := rng.Int64N(8<<30-4096) &^ 4095
				reads = append(reads, timed(nil, func() {
					if _, err := f.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
				}))
			}
			f.Close()
			n := 0
			for _, r := range l.proxy.Requests()[before:] {
				if r.Method == "GET" && r.Key == "blobs/sha256/"+l.files["8g"].Encoded() {
					n++
				}
			}
			fetches = append(fetches, n)
			worst = append(worst, float64(slices.Max(reads))/float64(oneGET))
			rss = append(rss, float64(vmHWM(b, st.PID)-idle)/(1<<20))
			var slow []int // the reads over 2× one GET
			for i, r := range reads {
				if r > 2*oneGET {
					slow = append(slow, i)
				}
			}
			b.Logf("round %d: %d ranged GETs, reads median %v max %v (one GET %v), reads over 2x: %v, RSS idle %d MB, peak +%.0f MB",
				round, n, median(reads), slices.Max(reads), oneGET, slow, idle>>20, rss[len(rss)-1])
		}
		b.ReportMetric(float64(slices.Max(fetches)), "ranged-gets")
		b.ReportMetric(slices.Max(worst), "x-worst-read")
		b.ReportMetric(slices.Max(rss), "rss-above-idle-MB")
	})
}
