package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// Runner carries out one command, writing its output to stdout and stderr
// and its progress events to progress (which sends them to the client).
// ctx is cancelled when the client goes away.
type Runner func(ctx context.Context, req Request, stdout, stderr io.Writer, progress func(Progress)) Result

// Server serves the control socket of a home held by this process.
type Server struct {
	ln  net.Listener
	run Runner
	log *slog.Logger

	// Commands run one at a time, as they would one after another from a
	// shell: none waits on a lock another holds.
	runMu sync.Mutex

	mu     sync.Mutex
	closed bool           // Close was called: no new client is served
	wg     sync.WaitGroup // commands being served (not unmount requests)

	unmounts chan *UnmountCall
	done     chan struct{} // closed by Close
}

// UnmountCall is a client's request to take the mount down, received by the
// daemon's main loop from Unmounts. The loop must Reply to each.
type UnmountCall struct {
	UnmountRequest
	reply chan Result
	sent  chan struct{}
}

// Reply answers the client, and returns once the answer is written or the
// client has gone: a daemon that replies and then exits has answered.
func (u *UnmountCall) Reply(res Result) {
	u.reply <- res
	<-u.sent
}

// Unmounts delivers the clients' unmount requests (opm umount).
func (s *Server) Unmounts() <-chan *UnmountCall { return s.unmounts }

// Listen creates <home>/opm.sock, replacing a stale one. The caller holds
// the home's Lock, so any socket already there was left by a dead daemon.
func Listen(home string, run Runner, log *slog.Logger) (*Server, error) {
	path := registry.PathsOf(home).Socket()
	if err := os.Remove(path); err == nil {
		log.Info("removed stale socket", "path", path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	return &Server{ln: ln, run: run, log: log, unmounts: make(chan *UnmountCall), done: make(chan struct{})}, nil
}

// Serve accepts clients until Close.
func (s *Server) Serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("accept", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed { // accepted just before Close: Close may be waiting already
			s.mu.Unlock()
			c.Close()
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer c.Close()
			if !s.serve(c) {
				s.wg.Done()
			}
		}()
	}
}

// Close stops accepting, removes the socket and waits for the commands in
// progress. An unmount request not yet received by the main loop is
// answered that the daemon is stopping.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		close(s.done)
	}
	s.closed = true
	s.mu.Unlock()
	err := s.ln.Close() // a unix listener removes its socket file
	s.wg.Wait()
	return err
}

// serve serves one client, counted in wg by the caller. It reports whether
// it marked it done itself: an unmount request is, at once, as Close must
// not wait for it (the main loop answers it after Close).
func (s *Server) serve(c net.Conn) (done bool) {
	kind, p, err := readFrame(c)
	var req Request
	if err == nil && kind != frameRequest {
		err = errors.New("first frame is not a request")
	}
	if err == nil {
		err = json.Unmarshal(p, &req)
	}
	if err != nil {
		s.log.Error("bad request", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// The client sends nothing more: EOF or an error means it is gone.
		io.Copy(io.Discard, c)
		cancel()
	}()
	if req.Unmount != nil {
		s.wg.Done()
		s.serveUnmount(ctx, c, *req.Unmount)
		return true
	}

	s.runMu.Lock()
	defer s.runMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	s.log.Info("command", "args", strings.Join(req.Args, " "), "cwd", req.Cwd)
	var mu sync.Mutex
	progress := func(ev Progress) {
		if b, err := json.Marshal(ev); err == nil {
			streamWriter{&mu, c, frameProgress}.Write(b)
		}
	}
	res := s.run(ctx, req, streamWriter{&mu, c, frameStdout}, streamWriter{&mu, c, frameStderr}, progress)
	b, _ := json.Marshal(res)
	mu.Lock()
	defer mu.Unlock()
	if err := writeFrame(c, frameResult, b); err != nil && !errors.Is(err, syscall.EPIPE) {
		s.log.Warn("reply", "err", err)
	}
	return false
}

// serveUnmount hands an unmount request to the main loop and sends its
// answer.
func (s *Server) serveUnmount(ctx context.Context, c net.Conn, req UnmountRequest) {
	s.log.Info("unmount requested", "mountpoint", req.Mountpoint, "lazy", req.Lazy)
	call := &UnmountCall{UnmountRequest: req, reply: make(chan Result), sent: make(chan struct{})}
	var res Result
	select {
	case s.unmounts <- call:
		res = <-call.reply
		defer close(call.sent)
	case <-s.done:
		res = Result{Code: opm.KindOf(opm.ErrLocked).Exit, Error: "the opm daemon is stopping already"}
	case <-ctx.Done():
		return // the client has gone
	}
	b, _ := json.Marshal(res)
	if err := writeFrame(c, frameResult, b); err != nil && !errors.Is(err, syscall.EPIPE) {
		s.log.Warn("reply", "err", err)
	}
}
