package server

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/openpm/opm"
)

// MaxHTTPManifestSize bounds a manifest PUT over HTTP: 4 MiB, as the
// distribution registry bounds it. (opm's own pushes, whose packages may
// hold many thousands of files, have opm.MaxManifestSize.)
const MaxHTTPManifestSize = 4 << 20

// Limits bound what a client can hold of the server: every request ends,
// answered or closed, within a time they bound, whatever the client sends
// or withholds (docs/http.md, "Limits"). A zero field takes its value in
// DefaultLimits.
type Limits struct {
	// ReadHeaderTimeout bounds the arrival of the request line and
	// headers (also of a new connection's first request), IdleTimeout the
	// wait for the next request on a kept-alive connection.
	ReadHeaderTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers (net/http
	// allows 4 KiB more): what a stalled request holds. 16 KiB is room
	// for any client's bearer token and keeps 1 000 stalled connections
	// under 100 MB.
	MaxHeaderBytes int
	// A request body must bring at least BodyMinBytes every BodyWindow,
	// and a read of it that waits a whole BodyWindow fails: a body
	// trickled slower is answered 408. A body the answer leaves unread
	// gets at most BodyWindow more to arrive (net/http reads up to
	// 256 KiB of it) before the connection is closed.
	BodyWindow   time.Duration
	BodyMinBytes int64
	// MaxConns bounds the connections open at once: past it, new ones
	// wait in the kernel's listen queue until one closes. MaxConnsPerAddr
	// bounds those of one client address (an IPv6 /64): past it, a new
	// one is closed at once.
	MaxConns, MaxConnsPerAddr int
}

// DefaultLimits are the limits of opm serve and opm mount --http.
var DefaultLimits = Limits{
	ReadHeaderTimeout: 30 * time.Second,
	IdleTimeout:       2 * time.Minute,
	MaxHeaderBytes:    16 << 10,
	BodyWindow:        30 * time.Second,
	BodyMinBytes:      64 << 10,
	MaxConns:          1024,
	MaxConnsPerAddr:   64,
}

// OrDefault is l with its zero fields set from DefaultLimits.
func (l Limits) OrDefault() Limits {
	d := DefaultLimits
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	set(&l.IdleTimeout, d.IdleTimeout)
	set(&l.BodyWindow, d.BodyWindow)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.BodyMinBytes <= 0 {
		l.BodyMinBytes = d.BodyMinBytes
	}
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxConnsPerAddr <= 0 {
		l.MaxConnsPerAddr = d.MaxConnsPerAddr
	}
	return l
}

// NewHTTPServer is the http.Server that serves h with the limits lim (the
// server's own: Options.Limits), logging its own errors to errorLog (nil:
// the log package's). Serve it on Listen's listener, which bounds the
// connections.
func NewHTTPServer(h http.Handler, lim Limits, errorLog *log.Logger) *http.Server {
	lim = lim.OrDefault()
	return &http.Server{Handler: h, ReadHeaderTimeout: lim.ReadHeaderTimeout, IdleTimeout: lim.IdleTimeout,
		MaxHeaderBytes: lim.MaxHeaderBytes, ErrorLog: errorLog}
}

// LimitListener is ln holding at most lim.MaxConns connections at once,
// and at most lim.MaxConnsPerAddr of one client address.
func LimitListener(ln net.Listener, lim Limits) net.Listener {
	lim = lim.OrDefault()
	return netutil.LimitListener(&perAddrListener{Listener: ln, max: lim.MaxConnsPerAddr, open: map[netip.Prefix]int{}}, lim.MaxConns)
}

// perAddrListener closes at once a connection from an address that already
// has max open.
type perAddrListener struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[netip.Prefix]int
}

func (l *perAddrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := addrKey(c.RemoteAddr())
		l.mu.Lock()
		full := l.open[key] >= l.max
		if !full {
			l.open[key]++
		}
		l.mu.Unlock()
		if full {
			c.Close()
			continue
		}
		return &addrConn{Conn: c, l: l, key: key}, nil
	}
}

// addrKey is the client of a connection: its IPv4 address, or its IPv6
// address's /64 (one host's share of an IPv6 network).
func addrKey(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

type addrConn struct {
	net.Conn
	l    *perAddrListener
	key  netip.Prefix
	once sync.Once
}

func (c *addrConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.key]--; c.l.open[c.key] <= 0 {
			delete(c.l.open, c.key)
		}
		c.l.mu.Unlock()
	})
	return err
}

// requestBody reads a request body that must keep up the minimum rate.
// The handler reads it; net/http keeps the body it made (its type tells it
// how much is left to read, and whether to close the connection rather than
// read it), under the read deadline this one leaves.
type requestBody struct {
	rc    io.ReadCloser
	ctl   *http.ResponseController
	lim   Limits
	start time.Time // of the current window
	n     int64     // bytes read in it
	eof   bool      // read to its end
}

// limitBody gives r's body, if it has one, the limits: the request the
// handler gets reads it through a requestBody, and until its first read the
// body has a whole window to begin.
func limitBody(w http.ResponseWriter, r *http.Request, lim Limits) *http.Request {
	if r.Body == nil || r.Body == http.NoBody {
		return r
	}
	b := &requestBody{rc: r.Body, ctl: http.NewResponseController(w), lim: lim, start: time.Now()}
	// Where the connection allows it (not an HTTP/2 stream of a test's
	// recorder).
	b.ctl.SetReadDeadline(b.start.Add(lim.BodyWindow))
	r2 := r.WithContext(r.Context())
	r2.Body = b
	return r2
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	now := time.Now()
	if now.Sub(b.start) >= b.lim.BodyWindow {
		if b.n < b.lim.BodyMinBytes {
			return 0, b.tooSlow()
		}
		b.start, b.n = now, 0
	}
	b.ctl.SetReadDeadline(now.Add(b.lim.BodyWindow))
	n, err := b.rc.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		// The body is done: what the handler does next (a slow upload
		// to the bucket) must not time out the connection. (On any
		// other error the deadline stays: it bounds what net/http reads
		// of the rest before it closes the connection.)
		b.eof = true
		b.ctl.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = b.tooSlow()
	}
	return n, err
}

func (b *requestBody) tooSlow() error {
	return opm.Errorf(opm.ErrTooSlow, "the request body came slower than %d bytes in %s", b.lim.BodyMinBytes, b.lim.BodyWindow)
}

// Close closes the body: net/http reads what is left of it, at most
// 256 KiB, under the deadline Read left.
func (b *requestBody) Close() error { return b.rc.Close() }

// bodyUnread reports whether r's body was not read to its end: an error
// answer then closes the connection rather than wait for the rest.
func bodyUnread(r *http.Request) bool {
	b, ok := r.Body.(*requestBody)
	return ok && !b.eof
}
