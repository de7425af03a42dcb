package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
	"github.com/openpm/opm/server"
)

// httpHome is a registry with one package of one file of size bytes, served
// by opm's server and, for the baseline, the same blob file by Go's
// http.FileServer; both on loopback TCP.
type httpHome struct {
	reg      *registry.Registry
	opm      string // URL of the blob on the opm server
	manifest string // URL of the manifest (by tag) on the opm server
	files    string // URL of the blob file on the FileServer
	same     string // URL of a file the size of the manifest on the FileServer
	size     int64
	mfSize   int
}

func newHTTPHome(b *testing.B, size int64) *httpHome {
	b.Helper()
	dir := b.TempDir()
	r, err := registry.Open(context.Background(), filepath.Join(dir, "home"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	file := filepath.Join(dir, "big.bin")
	writeRandom(b, file, size, 7)
	pushDir(b, r, "bench/http/blob:v1", file)
	p, err := r.Resolve(opm.Reference{Repository: opm.Repository{Namespace: "bench", Project: "http", Name: "blob"}, Tag: "v1"})
	if err != nil {
		b.Fatal(err)
	}
	d := p.Manifest.Files()[0].Digest
	srv, err := server.New(r, server.Options{})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	b.Cleanup(func() { hs.Close(); srv.Close() })
	// The baseline serves the very same blob file, and a plain file the
	// size of the manifest.
	static := filepath.Join(dir, "static")
	os.MkdirAll(static, 0o755)
	if err := os.Symlink(r.LocalPath(d), filepath.Join(static, "blob")); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(static, "manifest.json"), p.Bytes, 0o644); err != nil {
		b.Fatal(err)
	}
	fs := httptest.NewServer(http.FileServer(http.Dir(static)))
	b.Cleanup(fs.Close)
	return &httpHome{
		reg: r, size: size, mfSize: len(p.Bytes),
		opm:      hs.URL + "/v2/bench/http/blob/blobs/" + d.String(),
		manifest: hs.URL + "/v2/bench/http/blob/manifests/v1",
		files:    fs.URL + "/blob",
		same:     fs.URL + "/manifest.json",
	}
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}}

func get(b *testing.B, url string, want int64) {
	res, err := client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || (want >= 0 && n != want) {
		b.Fatalf("GET %s: %d, %d bytes, %v", url, res.StatusCode, n, err)
	}
}

// BenchmarkHTTPBlobGet: GET of a 512 MiB blob from opm serve (the blob
// store's file through http.ServeContent, after the OCI route, digest
// parse and existence check) against http.FileServer serving the same file.
func BenchmarkHTTPBlobGet(b *testing.B) {
	const size = 512 << 20
	h := newHTTPHome(b, size)
	get(b, h.files, size) // warm the page cache
	compare(b, "x-fileserver",
		nil, func() { get(b, h.files, size) },
		nil, func() { get(b, h.opm, size) })
	// Throughput of one more timed GET each, in MB/s.
	for _, side := range []struct{ name, url string }{{"opm", h.opm}, {"fileserver", h.files}} {
		start := time.Now()
		get(b, side.url, size)
		b.ReportMetric(float64(size)/1e6/time.Since(start).Seconds(), side.name+"-MB/s")
	}
}

// latencies sends total GETs of url from clients goroutines and returns
// every request's latency.
func latencies(b *testing.B, url string, clients, total int, want int64) []time.Duration {
	out := make([]time.Duration, total)
	var wg sync.WaitGroup
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				start := time.Now()
				get(b, url, want)
				out[i] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	slices.Sort(out)
	return out
}

func pct(s []time.Duration, p float64) time.Duration { return s[int(float64(len(s)-1)*p)] }

// BenchmarkHTTPManifestGet64: GET of a manifest by tag (a git tree walk to
// the tag file, Content-Type and digest headers) from 64 concurrent clients,
// against http.FileServer serving a file of the same size. Reports p50 and
// p99 of both and the ratio of the p50s.
func BenchmarkHTTPManifestGet64(b *testing.B) {
	h := newHTTPHome(b, 1<<20)
	const clients, total = 64, 20000
	latencies(b, h.manifest, clients, 2000, int64(h.mfSize)) // warm up
	latencies(b, h.same, clients, 2000, int64(h.mfSize))
	var p50o, p99o, p50f, p99f []time.Duration
	for range rounds {
		f := latencies(b, h.same, clients, total, int64(h.mfSize))
		o := latencies(b, h.manifest, clients, total, int64(h.mfSize))
		p50f, p99f = append(p50f, pct(f, 0.5)), append(p99f, pct(f, 0.99))
		p50o, p99o = append(p50o, pct(o, 0.5)), append(p99o, pct(o, 0.99))
	}
	mo50, mo99, mf50, mf99 := median(p50o), median(p99o), median(p50f), median(p99f)
	b.ReportMetric(float64(mo50)/float64(mf50), "x-fileserver-p50")
	b.ReportMetric(float64(mo99)/float64(mf99), "x-fileserver-p99")
	b.ReportMetric(float64(mo50.Microseconds()), "opm-p50-µs")
	b.ReportMetric(float64(mo99.Microseconds()), "opm-p99-µs")
	b.ReportMetric(float64(mf50.Microseconds()), "fileserver-p50-µs")
	b.ReportMetric(float64(mf99.Microseconds()), "fileserver-p99-µs")
	b.Logf("manifest of %d bytes, %d clients, %d GETs per round: opm p50 %v p99 %v; FileServer p50 %v p99 %v",
		h.mfSize, clients, total, mo50, mo99, mf50, mf99)
}
