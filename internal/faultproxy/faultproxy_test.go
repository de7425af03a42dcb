package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// body is what the target serves for every GET.
var body = bytes.Repeat([]byte("0123456789abcdef"), 4096)

func start(t *testing.T) *Proxy {
	t.Helper()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "65536")
		w.Write(body)
	}))
	t.Cleanup(target.Close)
	p, err := New(target.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func get(t *testing.T, p *Proxy, path string) (int, []byte, error) {
	t.Helper()
	resp, err := http.Get(p.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestFaults(t *testing.T) {
	p := start(t)
	if code, b, err := get(t, p, "/bucket/blobs/a"); code != 200 || err != nil || !bytes.Equal(b, body) {
		t.Fatalf("no plan: %d, %d bytes, %v", code, len(b), err)
	}

	p.Set(Plan{Error: 1, Prefix: "blobs/", Limit: 2})
	for i := range 2 {
		code, b, _ := get(t, p, "/bucket/blobs/a")
		if code != 500 && code != 503 || !strings.Contains(string(b), "<Error><Code>") {
			t.Fatalf("error %d: %d %q", i, code, b)
		}
	}
	if code, _, _ := get(t, p, "/bucket/blobs/a"); code != 200 {
		t.Fatalf("after the limit: %d", code)
	}
	p.Set(Plan{Error: 1, Prefix: "blobs/"})
	if code, _, _ := get(t, p, "/bucket/meta/x"); code != 200 {
		t.Fatalf("outside the prefix: %d", code)
	}

	p.Set(Plan{Error: 1, Method: "HEAD"})
	if code, _, _ := get(t, p, "/bucket/blobs/a"); code != 200 {
		t.Fatalf("a GET under a plan for HEADs: %d", code)
	}
	if resp, err := http.Head(p.URL + "/bucket/blobs/a"); err != nil || resp.StatusCode < 500 {
		t.Fatalf("a HEAD under a plan for HEADs: %v %v", resp, err)
	}

	p.Set(Plan{Truncate: 1, Seed: 1})
	if _, b, err := get(t, p, "/bucket/blobs/a"); !errors.Is(err, io.ErrUnexpectedEOF) || len(b) >= len(body) {
		t.Fatalf("truncate: %d bytes, %v; want fewer and an unexpected EOF", len(b), err)
	}

	p.Set(Plan{Corrupt: 1, Seed: 2})
	if code, b, err := get(t, p, "/bucket/blobs/a"); code != 200 || err != nil || len(b) != len(body) || bytes.Equal(b, body) {
		t.Fatalf("corrupt: %d, %d bytes, %v, equal %v", code, len(b), err, bytes.Equal(b, body))
	}

	p.Set(Plan{Error: 1, Every: 3})
	var codes []int
	for range 6 {
		code, _, _ := get(t, p, "/bucket/blobs/a")
		codes = append(codes, code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] == 200 || codes[3] != 200 || codes[5] == 200 {
		t.Fatalf("every 3rd: %v", codes)
	}

	p.Off()
	if code, b, err := get(t, p, "/bucket/blobs/a"); code != 200 || err != nil || !bytes.Equal(b, body) {
		t.Fatalf("off: %d, %d bytes, %v", code, len(b), err)
	}
	s := p.Stats()
	if s.Requests != 16 || s.Errors != 5 || s.Truncated != 1 || s.Corrupted != 1 || s.Faults() != 7 {
		t.Fatalf("stats: %v", s)
	}
	t.Log(s)
}

// The same seed gives the same faults.
func TestSeeded(t *testing.T) {
	p := start(t)
	run := func() string {
		p.Set(Plan{Error: 0.3, Corrupt: 0.3, Seed: 99})
		var out []byte
		for range 20 {
			code, b, _ := get(t, p, "/bucket/blobs/a")
			switch {
			case code != 200:
				out = append(out, 'E')
			case !bytes.Equal(b, body):
				out = append(out, 'C')
			default:
				out = append(out, '.')
			}
		}
		return string(out)
	}
	a, b := run(), run()
	if a != b || !strings.ContainsAny(a, "EC") || !strings.Contains(a, ".") {
		t.Fatalf("seeded runs: %s and %s", a, b)
	}
}

// startRanges starts a proxy in front of a server that answers ranged GETs
// of body (http.ServeContent), as a bucket does.
func startRanges(t *testing.T) *Proxy {
	t.Helper()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(target.Close)
	p, err := New(target.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func getRange(t *testing.T, p *Proxy, path, rng string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", p.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestBadRanges: a ranged GET answered with fewer bytes (and a
// Content-Range saying so), with the right number of bytes from elsewhere
// under the asked Content-Range, or with the whole object; a GET without
// a range passes unharmed.
func TestBadRanges(t *testing.T) {
	p := startRanges(t)
	resp, b := getRange(t, p, "/bucket/blobs/a", "bytes=100-199")
	if resp.StatusCode != 206 || !bytes.Equal(b, body[100:200]) {
		t.Fatalf("no plan: %d, %d bytes", resp.StatusCode, len(b))
	}
	for _, c := range []struct {
		f            RangeFault
		code         int
		want         []byte
		contentRange string
	}{
		{ShortRange, 206, body[100:150], "bytes 100-149/65536"},
		{WrongRange, 206, body[101:201], "bytes 100-199/65536"},
		{WholeObject, 200, body, ""},
	} {
		p.Set(Plan{BadRange: 1, RangeFault: c.f})
		resp, b := getRange(t, p, "/bucket/blobs/a", "bytes=100-199")
		if resp.StatusCode != c.code || !bytes.Equal(b, c.want) || resp.Header.Get("Content-Range") != c.contentRange {
			t.Errorf("fault %d: %d, %d bytes, Content-Range %q", c.f, resp.StatusCode, len(b), resp.Header.Get("Content-Range"))
		}
		if bytes.Equal(b, body[100:200]) {
			t.Errorf("fault %d: the right bytes", c.f)
		}
	}
	if resp, b := getRange(t, p, "/bucket/blobs/a", ""); resp.StatusCode != 200 || !bytes.Equal(b, body) {
		t.Errorf("a GET without a range: %d, %d bytes", resp.StatusCode, len(b))
	}
	if s := p.Stats(); s.BadRanges != 3 || s.Faults() != 3 {
		t.Errorf("stats: %v", s)
	}
}

// TestBandwidth: the answers of a plan with a bandwidth share one link:
// two concurrent GETs of 64 KiB at 1 MiB/s book 125 ms of it, whole and
// unharmed. (The booking is arithmetic, not a measured time.)
func TestBandwidth(t *testing.T) {
	p := startRanges(t)
	p.Set(Plan{Bandwidth: 1 << 20})
	t0 := time.Now()
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			if resp, b := getRange(t, p, "/bucket/blobs/a", ""); resp.StatusCode != 200 || !bytes.Equal(b, body) {
				t.Errorf("throttled GET: %d, %d bytes", resp.StatusCode, len(b))
			}
		}()
	}
	close(ready)
	wg.Wait()
	p.linkMu.Lock()
	booked := p.linkFree.Sub(t0)
	p.linkMu.Unlock()
	if want := time.Second*2*65536/(1<<20) - linkSlack; booked < want {
		t.Errorf("the link was booked %v, want at least %v for 128 KiB at 1 MiB/s (less the slack)", booked, want)
	}
}
