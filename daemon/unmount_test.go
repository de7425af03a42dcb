package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/openpm/opm"
)

// TestUnmountAnsweredAfterRelease: an unmount request reaches the main loop
// while a command is running; the main loop closes the server (which waits
// for that command, not for the unmount request) and releases the home, and
// only then answers; the client sees the home free when its answer comes.
func TestUnmountAnsweredAfterRelease(t *testing.T) {
	home := t.TempDir()
	lock, err := Acquire(home, Info{PID: os.Getpid(), Mountpoint: "/mnt/x", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	started, finish := make(chan struct{}), make(chan struct{})
	srv, err := Listen(home, func(ctx context.Context, req Request, stdout, stderr io.Writer, _ func(Progress)) Result {
		close(started)
		<-finish
		return Result{}
	}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()

	// A command in progress.
	c, err := Dial(home)
	if err != nil || c == nil {
		t.Fatalf("dial: %v %v", c, err)
	}
	defer c.Close()
	cmdDone := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), c, Request{Args: []string{"push"}, Cwd: "/"}, io.Discard, io.Discard, nil)
		cmdDone <- err
	}()
	<-started

	type answer struct {
		served bool
		res    Result
		err    error
		held   bool // the home, as the answer came
	}
	answered := make(chan answer, 1)
	go func() {
		served, res, err := Unmount(context.Background(), home, UnmountRequest{Mountpoint: "/mnt/x"})
		answered <- answer{served, res, err, Held(home)}
	}()

	call := <-srv.Unmounts()
	if call.Mountpoint != "/mnt/x" || call.Lazy {
		t.Errorf("unmount request %+v", call.UnmountRequest)
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a command was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(finish)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := <-cmdDone; err != nil {
		t.Errorf("the command in progress: %v", err)
	}
	lock.Release()
	call.Reply(Result{})
	a := <-answered
	if !a.served || a.err != nil || a.res != (Result{}) {
		t.Errorf("unmount answer: served %v, %+v, %v", a.served, a.res, a.err)
	}
	if a.held {
		t.Error("the answer came while the home was still held")
	}
}

// TestUnmountWhileStopping: an unmount request that comes as the daemon
// stops for another reason is answered, not left hanging.
func TestUnmountWhileStopping(t *testing.T) {
	home := t.TempDir()
	lock, err := Acquire(home, Info{PID: os.Getpid(), Mountpoint: "/mnt/x", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	requested := make(chan struct{})
	srv, err := Listen(home, nil, slog.New(signalHandler{"unmount requested", requested}))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	c, err := Dial(home)
	if err != nil || c == nil {
		t.Fatalf("dial: %v %v", c, err)
	}
	defer c.Close()
	answered := make(chan Result, 1)
	go func() {
		res, err := Run(context.Background(), c, Request{Unmount: &UnmountRequest{Mountpoint: "/mnt/x"}}, io.Discard, io.Discard, nil)
		if err != nil {
			res = Result{Code: -1, Error: err.Error()}
		}
		answered <- res
	}()
	// Nobody receives from Unmounts: the daemon is busy stopping.
	<-requested
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if res := <-answered; res.Code != opm.KindOf(opm.ErrLocked).Exit {
		t.Errorf("answer %+v, want exit %d (the daemon is stopping)", res, opm.KindOf(opm.ErrLocked).Exit)
	}
}

// signalHandler closes ch when a record with message msg is logged.
type signalHandler struct {
	msg string
	ch  chan struct{}
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h signalHandler) WithGroup(string) slog.Handler            { return h }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		close(h.ch)
	}
	return nil
}
