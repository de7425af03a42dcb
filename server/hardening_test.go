package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

// TestServedTypeIsValidated: a tag file committed by git with a mediaType
// opm does not accept (text/html: stored script on the pages' origin) is
// served as application/octet-stream, never with the type it names.
func TestServedTypeIsValidated(t *testing.T) {
	e := newEnv(t, Options{})
	meta, err := gitmeta.Open(filepath.Join(e.reg.Home(), "meta.git"))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	evil := []byte(`{"schemaVersion":2,"mediaType":"text/html","config":{"mediaType":"x","digest":"` + opm.EmptyDigest.String() + `","size":2},"layers":[],"x":"<script>alert(1)</script>"}`)
	_, _, err = meta.Update(context.Background(), gitmeta.Signature{Name: "mallory", Email: "m@example.org"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{{Path: "acme/web/site/tags/evil.json", Data: evil}}, gitmeta.Message{Subject: "evil"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/v2/acme/web/site/manifests/evil", nil)
	b := expect(t, r, 200, "")
	if ct := r.Header.Get("Content-Type"); ct != opm.MediaTypeOctet || !bytes.Equal(b, evil) {
		t.Fatalf("served as %q: %s", ct, b)
	}
}

// TestHTTPLimits: a manifest over 4 MiB, a Content-Range whose end would
// overflow, the session after the last one allowed, and a body trickled
// too slowly are refused with their own statuses; an auth scheme in any
// case is accepted.
func TestHTTPLimits(t *testing.T) {
	e := newEnv(t, Options{})
	big := bytes.Repeat([]byte(" "), MaxHTTPManifestSize+1)
	expect(t, e.do("PUT", "/v2/a/b/c/manifests/v1", big, "Content-Type: "+opm.MediaTypeManifest), 413, "SIZE_INVALID")

	// Content-Range arithmetic: end = MaxInt64 used to be accepted and its
	// body dropped.
	r := e.do("POST", "/v2/a/b/c/blobs/uploads/", nil)
	expect(t, r, 202, "")
	loc := r.Header.Get("Location")
	expect(t, e.do("PATCH", loc, []byte("x"), fmt.Sprintf("Content-Range: 0-%d", int64(math.MaxInt64))), 416, "BLOB_UPLOAD_INVALID")

	// Auth schemes are matched without case (RFC 7235).
	for _, scheme := range []string{"bearer ", "BEARER ", "Bearer  "} {
		expect(t, e.doAuth(scheme+testToken, "POST", "/v2/a/b/c/blobs/uploads/", nil), 202, "")
	}
	expect(t, e.doAuth("basic "+base64Encode("u:"+testToken), "POST", "/v2/a/b/c/blobs/uploads/", nil), 202, "")

	// Too many sessions: 429 with Retry-After (it was 413).
	for {
		up, err := e.srv.uploads.Start(opm.Repository{Namespace: "a", Project: "b", Name: "c"})
		if errors.Is(err, opm.ErrTooMany) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		up.Release()
	}
	r = e.do("POST", "/v2/a/b/c/blobs/uploads/", nil)
	expect(t, r, 429, "TOOMANYREQUESTS")
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

// TestSlowBody: a body that brings less than the minimum in a window is
// cut off with 408, and holds nothing: no session, no blob.
func TestSlowBody(t *testing.T) {
	e := newEnv(t, Options{Limits: Limits{BodyWindow: 200 * time.Millisecond, BodyMinBytes: 1000}})
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		for range 20 { // 10 bytes every 100 ms: far below 1000 in 200 ms
			if _, err := pw.Write([]byte("0123456789")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	req, err := http.NewRequest("POST", e.url+"/v2/a/b/c/blobs/uploads/?digest="+opm.EmptyDigest.String(), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.ContentLength = 1 << 30 // declared huge, trickled
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, 408, "BLOB_UPLOAD_INVALID")
	if e.reg.HasLocal(opm.EmptyDigest) {
		t.Error("a trickled body stored a blob")
	}
}

// TestHTTPServerTimeouts: the server opm serves with closes idle
// keep-alive connections and bounds the headers' arrival.
func TestHTTPServerTimeouts(t *testing.T) {
	hs := NewHTTPServer(http.NotFoundHandler(), Limits{}, nil)
	if hs.IdleTimeout <= 0 || hs.ReadHeaderTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("limits %v %v %v", hs.IdleTimeout, hs.ReadHeaderTimeout, hs.MaxHeaderBytes)
	}
	hs = NewHTTPServer(http.NotFoundHandler(), Limits{IdleTimeout: 100 * time.Millisecond}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// The answer, then EOF once the connection idles out.
	if b := readToClose(t, c); !strings.HasPrefix(b, "HTTP/1.1 404") {
		t.Fatalf("answer %q", b)
	}
}

// hostileLimits are the limits the hostile-client tests serve with: the
// timeouts short, so that what they bound ends at once.
var hostileLimits = Limits{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, BodyWindow: 300 * time.Millisecond}

// newServedEnv is newEnv served as opm serve serves: NewHTTPServer on a
// LimitListener, on loopback.
func newServedEnv(t *testing.T, opts Options) *env {
	t.Helper()
	return startEnv(t, opts, func(h http.Handler) (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := NewHTTPServer(h, opts.Limits, log.New(io.Discard, "", 0))
		go hs.Serve(LimitListener(ln, opts.Limits))
		return "http://" + ln.Addr().String(), func() { hs.Close() }
	})
}

// dialFrom connects to the server of e from the loopback address
// 127.0.0.<host> (one client each).
func (e *env) dialFrom(host byte) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, host)}}
	return d.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
}

// readToClose reads c until the server closes it, and returns what it
// read; the test fails if the server does not close it.
func readToClose(t *testing.T, c net.Conn) string {
	t.Helper()
	var mu sync.Mutex
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			mu.Lock()
			got.Write(b[:n])
			mu.Unlock()
			if err != nil {
				done <- err
				return
			}
		}
	}()
	var end error
	opmtest.Eventually(t, "the server to close the connection", func() error {
		select {
		case end = <-done:
			return nil
		default:
			mu.Lock()
			defer mu.Unlock()
			return fmt.Errorf("open; the server sent %q", got.String())
		}
	})
	if !errors.Is(end, io.EOF) && !errors.Is(end, syscall.ECONNRESET) {
		t.Fatalf("reading: %v", end)
	}
	return got.String()
}

// TestHostileBodies: a request whose declared body never (wholly) arrives
// is answered, and its connection closed, within the body window: a GET
// declaring a body it never sends, a write without a token declaring one
// (the 401 path), a chunked write that stops after a chunk, and a token
// holder declaring 5 GB and sending 1 000 bytes. An error answer to a
// request whose body was not read says Connection: close.
func TestHostileBodies(t *testing.T) {
	e := newServedEnv(t, Options{Limits: hostileLimits})
	auth := "Authorization: Bearer " + testToken + "\r\n"
	upload := "/v2/a/b/c/blobs/uploads/?digest=" + opm.EmptyDigest.String()
	for _, c := range []struct{ name, req, status string }{
		{"GET declaring 1000000 bytes, none sent", "GET /v2/_catalog HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", "200"},
		{"PUT declaring 100000 bytes without a token", "PUT /v2/a/b/c/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{", "401"},
		{"chunked POST without a token stopping after one chunk", "POST /v2/a/b/c/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "401"},
		{"chunked POST with the token stopping after one chunk", "POST " + upload + " HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "408"},
		{"POST with the token declaring 5 GB, sending 1000 bytes", "POST " + upload + " HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 5000000000\r\n\r\n" + strings.Repeat("x", 1000), "408"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := e.dialFrom(1)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, c.req); err != nil {
				t.Fatal(err)
			}
			got := readToClose(t, conn)
			res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("answer %q: %v", got, err)
			}
			res.Body.Close()
			if res.Status[:3] != c.status || !res.Close {
				t.Fatalf("answer %s, Connection %q; want %s and close", res.Status, res.Header.Get("Connection"), c.status)
			}
		})
	}
}

// TestPageHeaders: pages (and their 404) forbid scripts, frames and
// referrers.
func TestPageHeaders(t *testing.T) {
	e := newEnv(t, Options{})
	e.pushPackage("acme/web/site:v1", map[string]string{"a": "a"})
	for _, p := range []string{"/", "/acme/", "/acme/web/site/tags/v1/", "/nosuch/"} {
		r := e.do("GET", p, nil)
		readAll(t, r)
		for k, want := range map[string]string{"Content-Security-Policy": "default-src 'none'", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := r.Header.Get(k); !strings.Contains(got, want) {
				t.Errorf("%s: %s %q", p, k, got)
			}
		}
	}
}

// TestConnsPerAddr: a client address holding MaxConnsPerAddr connections
// has a further one closed at once, unanswered, while another address is
// served; once one of its connections closes, it is served again.
func TestConnsPerAddr(t *testing.T) {
	e := newServedEnv(t, Options{Limits: Limits{MaxConnsPerAddr: 2}})
	var held []net.Conn
	for range 2 {
		c, err := e.dialFrom(2)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	ask := func(host byte) string {
		t.Helper()
		return readToClose(t, dialGet(t, e, host))
	}
	if got := ask(2); got != "" {
		t.Fatalf("a third connection of one address was answered: %q", got)
	}
	if got := ask(3); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("another address: %q", got)
	}
	held[0].Close()
	opmtest.Eventually(t, "the address to be served again", func() error {
		if got := ask(2); !strings.HasPrefix(got, "HTTP/1.1 200") {
			return fmt.Errorf("answer %q", got)
		}
		return nil
	})
}

// TestStalledConnections: 1 000 connections that stall — idle, headers cut
// short, a declared body withheld (with and without the token), a body
// stopped after 1 000 bytes; all but the idle ones with 15 KiB of
// headers — from 20 client
// addresses are each closed within its bound, while a fresh client is
// served. What they cost the server is logged (RELIABILITY.md, "Hostile
// clients").
func TestStalledConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("1 000 connections")
	}
	const n, perAddr = 1000, 50
	lim := Limits{ReadHeaderTimeout: 3 * time.Second, IdleTimeout: 3 * time.Second, BodyWindow: 3 * time.Second}
	e := newServedEnv(t, Options{Limits: lim})
	big := "X-Pad: " + strings.Repeat("p", 15<<10) + "\r\n" // near the header limit, 16 KiB
	auth := "Authorization: Bearer " + testToken + "\r\n"
	stalls := []string{
		"",
		"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\n" + big,
		"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\n" + big + "Content-Length: 1000\r\n\r\n",
		"PUT /v2/a/b/c/manifests/v1 HTTP/1.1\r\nHost: x\r\n" + big + "Content-Length: 100000\r\n\r\n",
		"POST /v2/a/b/c/blobs/uploads/?digest=" + opm.EmptyDigest.String() + " HTTP/1.1\r\nHost: x\r\n" + auth + big + "Content-Length: 5000000000\r\n\r\n" + strings.Repeat("x", 1000),
	}
	before := memUse()
	goroutines := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := e.dialFrom(byte(2 + i/perAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		if _, err := io.WriteString(c, stalls[i%len(stalls)]); err != nil {
			t.Fatal(err)
		}
	}
	// The server holds them: a goroutine each.
	opmtest.Eventually(t, "the server to take the connections", func() error {
		if held := runtime.NumGoroutine() - goroutines; held < n*9/10 {
			return fmt.Errorf("%d goroutines more", held)
		}
		return nil
	})
	held := memUse()
	if got := readToClose(t, dialGet(t, e, 1)); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("a fresh client: %q", got)
	}
	t.Logf("%d stalled connections: %d goroutines more; Go heap and stacks %+.1f MB, RSS %+.1f MB",
		n, runtime.NumGoroutine()-goroutines, float64(held.heap-before.heap)/1e6, float64(held.rss-before.rss)/1e6)
	var closed atomic.Int64
	for _, c := range conns {
		go func() {
			io.Copy(io.Discard, c)
			closed.Add(1)
		}()
	}
	opmtest.Eventually(t, "the server to close every stalled connection", func() error {
		if k := closed.Load(); k < n {
			return fmt.Errorf("%d of %d closed", k, n)
		}
		return nil
	})
}

// dialGet sends GET /v2/ (Connection: close) from 127.0.0.<host>.
func dialGet(t *testing.T, e *env, host byte) net.Conn {
	t.Helper()
	c, err := e.dialFrom(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET /v2/_catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	return c
}

type memory struct{ heap, rss uint64 }

// memUse is the process's Go heap and stacks in use, after a collection,
// and its resident set (Linux; 0 elsewhere).
func memUse() memory {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := memory{heap: ms.HeapInuse + ms.StackInuse}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				var kb uint64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				m.rss = kb << 10
			}
		}
	}
	return m
}

// commitFile commits data at path p of the home's metadata as another git
// writer would, past every check of the registry.
func (e *env) commitFile(p string, data []byte) {
	e.t.Helper()
	meta, err := gitmeta.Open(filepath.Join(e.reg.Home(), "meta.git"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer meta.Close()
	_, _, err = meta.Update(context.Background(), gitmeta.Signature{Name: "mallory", Email: "m@example.org"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{{Path: p, Data: data, Delete: data == nil}}, gitmeta.Message{Subject: "by hand"}, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestDeleteBlobKeepsWhenInDoubt: a blob DELETE keeps blobs by gc's rule.
// A stored manifest that does not parse (committed by git) may name any
// blob: while it stands no blob is deleted (405), as gc refuses to run;
// once it is gone the DELETE goes through. A manifest whose digests are
// written with JSON escapes (its bytes never spell the hex) keeps its blob
// too. (Both DELETEs used to answer 202 and remove a blob a tag names.)
func TestDeleteBlobKeepsWhenInDoubt(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/img/app"
	cfg := e.putBlob(repo, []byte("{}"))

	// A tag file that names the blob but does not parse (a negative size).
	d := e.putBlob(repo, []byte("named by a broken manifest"))
	bad := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"x","digest":%q,"size":2},"layers":[{"mediaType":"x","digest":%q,"size":-1}]}`,
		opm.MediaTypeManifest, cfg, d)
	e.commitFile("acme/img/app/tags/broken.json", []byte(bad))
	expect(t, e.do("DELETE", "/v2/"+repo+"/blobs/"+d.String(), nil), 405, "DENIED")
	expect(t, e.do("GET", "/v2/"+repo+"/blobs/"+d.String(), nil), 200, "")
	if _, err := e.reg.GC(context.Background(), registry.GCOptions{}); err == nil {
		t.Fatal("gc ran over a manifest that does not parse")
	}
	e.commitFile("acme/img/app/tags/broken.json", nil)
	expect(t, e.do("DELETE", "/v2/"+repo+"/blobs/"+d.String(), nil), 202, "")

	// A valid manifest naming its layer with escapes: "\u0061" is "a".
	l := e.putBlob(repo, []byte("named with escapes"))
	hex := l.Encoded()
	escaped := "sha256:"
	for _, c := range hex {
		escaped += fmt.Sprintf(`\u%04x`, c)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"x","digest":%q,"size":2},"layers":[{"mediaType":"x","digest":"%s","size":18}]}`,
		opm.MediaTypeManifest, cfg, escaped)
	if strings.Contains(m, hex) {
		t.Fatal("the manifest spells the hex")
	}
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", []byte(m), "Content-Type: "+opm.MediaTypeManifest), 201, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/blobs/"+l.String(), nil), 405, "DENIED")
	expect(t, e.do("GET", "/v2/"+repo+"/manifests/v1", nil), 200, "")
	expect(t, e.do("GET", "/v2/"+repo+"/blobs/"+l.String(), nil), 200, "")
}

// TestDeleteManifestChildrenLast: a manifest that a committed index names
// cannot be deleted while the index stands — 409 with one line naming the
// index — as an index cannot be put before its manifests; deleted parent
// first, it goes. (The DELETE used to answer 202 and leave the index
// naming a manifest the repository does not keep.)
func TestDeleteManifestChildrenLast(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/img/app"
	cfg := e.putBlob(repo, []byte("{}"))
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"x","digest":%q,"size":2},"layers":[]}`, opm.MediaTypeManifest, cfg))
	md := digest.FromBytes(m)
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/"+md.String(), m, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d}]}`, opm.MediaTypeIndex, opm.MediaTypeManifest, md, len(m)))
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/multi", idx, "Content-Type: "+opm.MediaTypeIndex), 201, "")

	head := e.head()
	b := expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 409, "DENIED")
	if !strings.Contains(string(b), repo+":multi") || !strings.Contains(string(b), "delete that index first") {
		t.Errorf("the refusal does not say what to delete first: %s", b)
	}
	if e.head() != head {
		t.Fatal("a refused DELETE moved the head")
	}
	res, err := e.reg.Fsck(context.Background(), registry.FsckOptions{})
	if err != nil || len(res.Problems) > 0 {
		t.Fatalf("fsck: %v %+v", err, res)
	}
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/multi", nil), 202, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 202, "")

	// A child kept only under a tag: the tag goes (202, as OCI clients
	// expect of a tag delete) and the manifest stays by digest in the same
	// commit, so the index stays whole; by digest it is the last copy.
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/child", m, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/multi", idx, "Content-Type: "+opm.MediaTypeIndex), 201, "")
	before := e.commits()
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/child", nil), 202, "")
	if n := e.commits() - before; n != 1 {
		t.Errorf("the tag delete made %d commits, want 1", n)
	}
	expect(t, e.do("GET", "/v2/"+repo+"/manifests/child", nil), 404, "MANIFEST_UNKNOWN")
	expect(t, e.do("GET", "/v2/"+repo+"/manifests/"+md.String(), nil), 200, "")
	if res, err := e.reg.Fsck(context.Background(), registry.FsckOptions{}); err != nil || len(res.Problems) > 0 {
		t.Fatalf("fsck after the tag delete: %v %+v", err, res)
	}
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 409, "DENIED")
	// A second copy may go by tag without keeping anything more.
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/child", m, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/child", nil), 202, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/multi", nil), 202, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 202, "")
}

// TestPutManifestChecksEveryLayer: every layer is checked for presence and
// size whatever its media type, and no layer escapes the size check by
// sharing a digest — a titled "non-distributable" layer is a file of the
// package. (Such a PUT of missing 4 EiB blobs used to answer 201: a tag
// before its blobs, shown as 4.0 EiB, EIO in the mount.)
func TestPutManifestChecksEveryLayer(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/img/app"
	cfg := e.putBlob(repo, []byte("{}"))
	real := e.putBlob(repo, []byte("eleven byte"))
	missing := digest.FromString("never pushed")
	layer := func(mt string, d digest.Digest, size int64, title string) string {
		a := ""
		if title != "" {
			a = fmt.Sprintf(`,"annotations":{%q:%q}`, opm.AnnotationTitle, title)
		}
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d%s}`, mt, d, size, a)
	}
	manifest := func(layers ...string) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[%s]}`,
			opm.MediaTypeManifest, opm.ArtifactType, opm.MediaTypeEmpty, cfg, strings.Join(layers, ",")))
	}
	const huge = int64(opm.MaxSize) - 2 // 4 EiB with the config's 2 bytes
	head := e.head()
	for _, c := range []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"titled nondistributable", manifest(layer("application/vnd.oci.image.layer.nondistributable.v1.tar", missing, huge, "big")), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"titled foreign", manifest(layer("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", missing, huge, "big")), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"foreign, present, lying size", manifest(layer("application/vnd.oci.image.layer.nondistributable.v1.tar", real, huge, "big")), 400, "SIZE_INVALID"},
		{"one digest, two sizes", manifest(layer(opm.MediaTypeOctet, real, 11, "a"), layer(opm.MediaTypeOctet, real, 1<<40, "b")), 400, "MANIFEST_INVALID"},
	} {
		t.Run(c.name, func(t *testing.T) {
			expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", c.body, "Content-Type: "+opm.MediaTypeManifest), c.status, c.code)
		})
	}
	if e.head() != head {
		t.Fatal("a refused PUT committed")
	}
	// The same layer present with its size is a file like any other.
	ok := manifest(layer("application/vnd.oci.image.layer.nondistributable.v1.tar", real, 11, "f"))
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", ok, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	// An untitled one is no file: foreign content the registry does not
	// hold (image-spec before 1.1, as the OCI conformance suite pushes).
	// It is accepted missing, and nothing counts or wants it.
	foreign := manifest(layer("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", missing, huge, ""))
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v2", foreign, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	if res, err := e.reg.Fsck(context.Background(), registry.FsckOptions{}); err != nil || len(res.Problems) > 0 {
		t.Fatalf("fsck with a foreign layer: %v %+v", err, res)
	}
}
