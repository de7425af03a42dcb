package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
