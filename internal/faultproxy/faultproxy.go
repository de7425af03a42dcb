// Package faultproxy is an HTTP reverse proxy on loopback that injects
// faults between a client and a server: in opm's tests, between the S3 SDK
// under an s3:// bucket and gofakes3.
//
// Start one in front of a server, point the client at its URL, and change
// what goes wrong while the test runs:
//
//	p, url := faultproxy.StartS3(t)      // gofakes3 behind a proxy; url is an s3:// bucket URL
//	… push through url with no faults …
//	p.Set(faultproxy.Plan{Error: 0.2, Truncate: 0.1, Corrupt: 0.1, Prefix: "blobs/", Seed: 1})
//	… read: retries must hide the faults, or fail clearly …
//	p.Off()
//	s := p.Stats()                       // requests and faults injected, by kind
//
// A request the plan picks gets at most one fault:
//
//   - Error: answered 500 or 503 with an S3-style XML error body, without
//     reaching the server;
//   - Truncate (GET of an object only): the server's status, headers and
//     Content-Length, then part of the body, then the connection is cut;
//   - Corrupt (GET of an object only): the server's response with bytes of
//     the body flipped, same length;
//   - BadRange (GET of a range of an object, a Range header): the answer
//     RangeFault names — fewer bytes than asked (ShortRange), the right
//     number of bytes from another offset under the asked Content-Range
//     (WrongRange), or the whole object with 200 (WholeObject).
//
// Delay is added to every request the plan covers, and Bandwidth caps the
// bytes per second of all covered answers together, as one slow link
// would: a slow bucket on loopback. Decisions come from a random source
// seeded by Plan.Seed, so a test that sends its requests in a fixed order
// sees the same faults every run. Bodies of faulted GETs are
// held in memory: the proxy is for test-sized objects.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Plan says which faults to inject. The zero Plan injects none.
type Plan struct {
	// Chances, each between 0 and 1, that a request covered by the plan
	// gets each fault; one draw decides, so their sum should be at most 1.
	// Truncate and Corrupt apply to GETs of objects (whole or ranged); for other requests
	// the draw that picks them passes the request through unharmed.
	Error, Truncate, Corrupt float64
	// BadRange is the chance that a covered GET of a range of an object
	// gets RangeFault; it is drawn after Error, Truncate and Corrupt.
	BadRange   float64
	RangeFault RangeFault
	// Delay is added before every covered request is answered.
	Delay time.Duration
	// Bandwidth, if above 0, caps the bytes per second of the bodies of
	// every covered answer together (200 MB/s: 200e6).
	Bandwidth int64
	// Prefix, if set, limits the plan to objects whose key (the path after
	// the bucket, in path-style URLs) starts with it, e.g. "blobs/".
	Prefix string
	// Method, if set, limits the plan to requests of that HTTP method,
	// e.g. "HEAD" for S3's existence checks.
	Method string
	// Every, if above 1, limits the plan to every Every-th covered request
	// (the Every-th, the 2×Every-th, …); with a chance of 1 that is a fault
	// on every Every-th request.
	Every int
	// Limit, if above 0, stops injecting after that many faults: "fail
	// three times, then work".
	Limit int
	// Seed seeds the random source, reset by every Set.
	Seed uint64
}

// RangeFault is how a ranged GET is answered wrongly.
type RangeFault int

const (
	ShortRange  RangeFault = iota // 206 with the first half of the range, Content-Range saying so
	WrongRange                    // 206 with as many bytes from one byte further, under the asked Content-Range
	WholeObject                   // 200 with the whole object, the Range ignored
)

// Stats counts what the proxy saw and did since it started.
type Stats struct {
	Requests  int64 // every request received
	Covered   int64 // requests the plan covered (matched Prefix)
	Errors    int64 // answered 500/503
	Truncated int64 // bodies cut short
	Corrupted int64 // bodies with flipped bytes
	Delayed   int64 // requests delayed
	BadRanges int64 // ranged GETs answered wrongly
}

// Faults is the number of faults injected.
func (s Stats) Faults() int64 { return s.Errors + s.Truncated + s.Corrupted + s.BadRanges }

func (s Stats) String() string {
	return fmt.Sprintf("requests=%d errors=%d truncated=%d corrupted=%d bad-ranges=%d delayed=%d",
		s.Requests, s.Errors, s.Truncated, s.Corrupted, s.BadRanges, s.Delayed)
}

// Sub returns the counts of s since an earlier snapshot.
func (s Stats) Sub(old Stats) Stats {
	return Stats{s.Requests - old.Requests, s.Covered - old.Covered, s.Errors - old.Errors,
		s.Truncated - old.Truncated, s.Corrupted - old.Corrupted, s.Delayed - old.Delayed, s.BadRanges - old.BadRanges}
}

// Proxy is a fault-injecting reverse proxy listening on 127.0.0.1.
type Proxy struct {
	// URL is the proxy's base URL, http://127.0.0.1:port.
	URL string

	target *url.URL
	srv    *httptest.Server
	client *http.Client

	mu       sync.Mutex
	plan     Plan
	rng      *rand.Rand
	covered  int // requests covered under the current plan
	injected int // faults injected under the current plan

	requests, coveredTotal, errors, truncated, corrupted, delayed, badRanges atomic.Int64

	linkMu   sync.Mutex
	linkFree time.Time // when the shared link of Plan.Bandwidth is next free

	logMu sync.Mutex
	log   []Request

	inflight, maxInflight atomic.Int64
}

// MaxInFlight is the most requests the proxy was answering at once.
func (p *Proxy) MaxInFlight() int64 { return p.maxInflight.Load() }

// A Request is one request the proxy received: its method, the object key
// (path-style: the path after the bucket; "" for the bucket itself), and
// whether it lists the bucket (a GET of the bucket, as S3's ListObjects).
type Request struct {
	Method string
	Key    string
	List   bool
}

// Requests returns every request received so far, in order.
func (p *Proxy) Requests() []Request {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return append([]Request(nil), p.log...)
}

// New starts a proxy in front of target (a base URL such as
// http://127.0.0.1:9000), with no faults. Close stops it.
func New(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q: want a base URL like http://host:port", target)
	}
	p := &Proxy{
		target: u,
		client: &http.Client{
			Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	p.Set(Plan{})
	p.srv = httptest.NewServer(p)
	p.URL = p.srv.URL
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() {
	p.srv.Close()
	p.client.CloseIdleConnections()
}

// Set replaces the plan (and resets its random source, Every and Limit
// counts). It is safe to call while requests are in flight.
func (p *Proxy) Set(plan Plan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = plan
	p.rng = rand.New(rand.NewPCG(plan.Seed, plan.Seed^0x9e3779b97f4a7c15))
	p.covered, p.injected = 0, 0
}

// Off stops injecting faults.
func (p *Proxy) Off() { p.Set(Plan{}) }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{p.requests.Load(), p.coveredTotal.Load(), p.errors.Load(),
		p.truncated.Load(), p.corrupted.Load(), p.delayed.Load(), p.badRanges.Load()}
}

type fault int

const (
	none fault = iota
	errorFault
	truncateFault
	corruptFault
	rangeFault
)

// decision is what happens to one request.
type decision struct {
	fault  fault
	delay  time.Duration
	status int     // for errorFault
	frac   float64 // for truncateFault: how much of the body is sent
	flips  uint64  // for corruptFault: seeds the positions of flipped bytes
	rangeF RangeFault
	bw     int64 // Plan.Bandwidth
}

// decide draws the fate of a request under the current plan.
func (p *Proxy) decide(r *http.Request) decision {
	key := objectKey(r.URL.Path)
	object := r.Method == http.MethodGet && key != "" && !strings.HasSuffix(key, "/")
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.plan
	if pl == (Plan{Seed: pl.Seed}) || !strings.HasPrefix(key, pl.Prefix) || pl.Method != "" && r.Method != pl.Method {
		return decision{}
	}
	p.coveredTotal.Add(1)
	p.covered++
	d := decision{delay: pl.Delay, bw: pl.Bandwidth}
	if pl.Every > 1 && p.covered%pl.Every != 0 || pl.Limit > 0 && p.injected >= pl.Limit {
		return d
	}
	x := p.rng.Float64()
	switch {
	case x < pl.Error:
		d.fault = errorFault
		d.status = []int{http.StatusInternalServerError, http.StatusServiceUnavailable}[p.rng.IntN(2)]
	case x < pl.Error+pl.Truncate && object:
		d.fault = truncateFault
		d.frac = p.rng.Float64()
	case x >= pl.Error+pl.Truncate && x < pl.Error+pl.Truncate+pl.Corrupt && object:
		d.fault = corruptFault
		d.flips = p.rng.Uint64()
	case x >= pl.Error+pl.Truncate+pl.Corrupt && x < pl.Error+pl.Truncate+pl.Corrupt+pl.BadRange && object && r.Header.Get("Range") != "":
		d.fault = rangeFault
		d.rangeF = pl.RangeFault
	}
	if d.fault != none {
		p.injected++
	}
	return d
}

// objectKey is the key in a path-style URL: /bucket/key → key.
func objectKey(path string) string {
	path = strings.TrimPrefix(path, "/")
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return ""
}

// hopHeaders are meaningful for one connection only.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	key := objectKey(r.URL.Path)
	p.logMu.Lock()
	p.log = append(p.log, Request{Method: r.Method, Key: key, List: r.Method == http.MethodGet && key == ""})
	p.logMu.Unlock()
	n := p.inflight.Add(1)
	defer p.inflight.Add(-1)
	for m := p.maxInflight.Load(); n > m && !p.maxInflight.CompareAndSwap(m, n); m = p.maxInflight.Load() {
	}
	d := p.decide(r)
	if d.delay > 0 {
		p.delayed.Add(1)
		t := time.NewTimer(d.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if d.fault == errorFault {
		p.errors.Add(1)
		writeError(w, r, d.status)
		return
	}

	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.target.Scheme, p.target.Host
	out.Host = r.Host // the client signed this Host
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	var asked [2]int64 // the range the client asked for, for rangeFault
	if d.fault == rangeFault {
		var ok bool
		if asked, ok = parseRange(r.Header.Get("Range")); !ok {
			d.fault = none // a range this proxy does not parse passes unharmed
		} else {
			switch d.rangeF {
			case WholeObject:
				out.Header.Del("Range")
			case WrongRange:
				out.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", asked[0]+1, asked[1]+1))
			}
		}
	}
	w = p.throttle(w, d.bw)
	resp, err := p.client.Do(out)
	if err != nil {
		http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	if d.fault == rangeFault && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent) {
		p.badRanges.Add(1)
		if d.rangeF == WholeObject {
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
			return
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		total := "*"
		if _, t, ok := strings.Cut(resp.Header.Get("Content-Range"), "/"); ok {
			total = t
		}
		if d.rangeF == ShortRange {
			body = body[:len(body)/2]
			asked[1] = asked[0] + int64(len(body)) - 1
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%s", asked[0], asked[1], total))
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(body)
		return
	}
	if d.fault == none || d.fault == rangeFault || resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	switch d.fault {
	case corruptFault:
		if len(body) > 0 {
			p.corrupted.Add(1)
			rng := rand.New(rand.NewPCG(d.flips, 1))
			for range 1 + rng.IntN(4) {
				body[rng.IntN(len(body))] ^= byte(1 + rng.IntN(255)) // never 0: a real change
			}
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	case truncateFault:
		if len(body) == 0 {
			w.WriteHeader(resp.StatusCode)
			return
		}
		p.truncated.Add(1)
		w.WriteHeader(resp.StatusCode)
		w.Write(body[:int(d.frac*float64(len(body)))])
		w.(http.Flusher).Flush()
		// The client was promised Content-Length bytes; cutting the
		// connection now leaves it with fewer.
		panic(http.ErrAbortHandler)
	}
}

// parseRange reads a Range header of one closed range, bytes=A-B.
func parseRange(h string) ([2]int64, bool) {
	var a, b int64
	if n, err := fmt.Sscanf(h, "bytes=%d-%d", &a, &b); n != 2 || err != nil || a < 0 || b < a {
		return [2]int64{}, false
	}
	return [2]int64{a, b}, true
}

// throttle returns w, writing no faster than bw bytes per second shared
// with every other throttled answer (w itself when bw is 0).
func (p *Proxy) throttle(w http.ResponseWriter, bw int64) http.ResponseWriter {
	if bw <= 0 {
		return w
	}
	return &throttled{ResponseWriter: w, p: p, bw: bw}
}

type throttled struct {
	http.ResponseWriter
	p  *Proxy
	bw int64
}

// linkSlack is how far the shared link's schedule may lag behind the
// clock: a sleep that overshoots (by the timer's granularity, on every
// small write) is made up for by the writes after it, up to this much, so
// that the link carries Bandwidth on average instead of a fraction of it.
const linkSlack = 5 * time.Millisecond

// Write sends b in pieces of at most 64 KiB, each after the shared link
// has had the time to carry it.
func (t *throttled) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), 64<<10)
		t.p.linkMu.Lock()
		if now := time.Now(); t.p.linkFree.Before(now.Add(-linkSlack)) {
			t.p.linkFree = now.Add(-linkSlack) // idle: credit no more than the slack
		}
		t.p.linkFree = t.p.linkFree.Add(time.Duration(int64(k) * int64(time.Second) / t.bw))
		done := t.p.linkFree
		t.p.linkMu.Unlock()
		time.Sleep(time.Until(done))
		m, err := t.ResponseWriter.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

// Flush passes a flush through (a truncated answer flushes before it cuts).
func (t *throttled) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// writeError answers like S3 does when it fails.
func writeError(w http.ResponseWriter, r *http.Request, status int) {
	code, msg := "InternalError", "We encountered an internal error. Please try again."
	if status == http.StatusServiceUnavailable {
		code, msg = "ServiceUnavailable", "Please reduce your request rate."
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>faultproxy</RequestId></Error>`,
		code, msg, r.URL.Path)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", fmt.Sprint(b.Len()))
	w.Header().Set("Connection", "close") // the request body, if any, is not read
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}
