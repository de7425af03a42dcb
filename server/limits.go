package server

import (
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/openpm/opm"
)

// The server's limits on connections and bodies (docs/http.md, "Limits").
const (
	// MaxHTTPManifestSize bounds a manifest PUT over HTTP: 4 MiB, as the
	// distribution registry bounds it. (opm's own pushes, whose packages
	// may hold many thousands of files, have opm.MaxManifestSize.)
	MaxHTTPManifestSize = 4 << 20
	// ReadHeaderTimeout bounds the request line and headers; IdleTimeout
	// the wait for the next request on a kept-alive connection.
	ReadHeaderTimeout = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
)

// A request body must bring at least bodyMinBytes every bodyWindow (a
// client trickling a huge declared body holds nothing for long), and a read
// that waits a whole window for its first byte fails. (Variables: tests
// shorten them.)
var (
	bodyWindow         = 30 * time.Second
	bodyMinBytes int64 = 64 << 10
)

// NewHTTPServer is the http.Server that serves h with the limits above,
// logging its own errors to errorLog (nil: the log package's).
func NewHTTPServer(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, IdleTimeout: IdleTimeout, MaxHeaderBytes: 1 << 20, ErrorLog: errorLog}
}

// minRateBody reads a request body that must keep up the minimum rate.
type minRateBody struct {
	rc    io.ReadCloser
	ctl   *http.ResponseController
	start time.Time // of the current window
	n     int64     // bytes read in it
}

func newMinRateBody(w http.ResponseWriter, rc io.ReadCloser) io.ReadCloser {
	return &minRateBody{rc: rc, ctl: http.NewResponseController(w), start: time.Now()}
}

func (b *minRateBody) Read(p []byte) (int, error) {
	now := time.Now()
	if now.Sub(b.start) >= bodyWindow {
		if b.n < bodyMinBytes {
			return 0, tooSlow()
		}
		b.start, b.n = now, 0
	}
	// Where the connection allows it (not an HTTP/2 stream of a test's
	// recorder), a read that waits a whole window fails.
	b.ctl.SetReadDeadline(now.Add(bodyWindow))
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = tooSlow()
	}
	if err != nil {
		// The body is done: what the handler does next (a slow upload
		// to the bucket) must not time out the connection.
		b.ctl.SetReadDeadline(time.Time{})
	}
	return n, err
}

func tooSlow() error {
	return opm.Errorf(opm.ErrTooSlow, "the request body came slower than %d bytes in %s", bodyMinBytes, bodyWindow)
}

func (b *minRateBody) Close() error {
	b.ctl.SetReadDeadline(time.Time{})
	return b.rc.Close()
}
