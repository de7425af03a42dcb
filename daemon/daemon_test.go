package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve holds home and serves run on its socket until the test ends.
func serve(t *testing.T, home string, run Runner) {
	t.Helper()
	lock, err := Acquire(home, Info{PID: os.Getpid(), Mountpoint: "/mnt/x", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(home, run, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		srv.Close()
		lock.Release()
	})
}

func TestRoundTrip(t *testing.T) {
	home := t.TempDir()
	serve(t, home, func(ctx context.Context, req Request, stdout, stderr io.Writer, _ func(Progress)) Result {
		fmt.Fprintf(stdout, "args=%s cwd=%s author=%s", strings.Join(req.Args, ","), req.Cwd, req.Getenv("GIT_AUTHOR_NAME"))
		stderr.Write(bytes.Repeat([]byte("e"), maxFrame+10)) // more than one frame
		return Result{Code: 3, Error: "not found: x"}
	})
	t.Setenv("GIT_AUTHOR_NAME", "Ada")
	c, err := Dial(home)
	if err != nil || c == nil {
		t.Fatalf("dial: %v %v", c, err)
	}
	defer c.Close()
	var stdout, stderr bytes.Buffer
	res, err := Run(context.Background(), c, Request{Args: []string{"ls", "a/b/c"}, Cwd: "/w", Env: Environ()}, &stdout, &stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Code: 3, Error: "not found: x"}) {
		t.Errorf("result %+v", res)
	}
	if got := stdout.String(); got != "args=ls,a/b/c cwd=/w author=Ada" {
		t.Errorf("stdout %q", got)
	}
	if stderr.Len() != maxFrame+10 {
		t.Errorf("stderr: %d bytes, want %d", stderr.Len(), maxFrame+10)
	}
}

// The client going away cancels the command in the daemon.
func TestCancel(t *testing.T) {
	home := t.TempDir()
	cancelled := make(chan struct{})
	serve(t, home, func(ctx context.Context, req Request, stdout, stderr io.Writer, _ func(Progress)) Result {
		io.WriteString(stdout, "started")
		<-ctx.Done()
		close(cancelled)
		return Result{Code: 1, Error: "cancelled"}
	})
	c, err := Dial(home)
	if err != nil || c == nil {
		t.Fatalf("dial: %v %v", c, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := &notifyWriter{ch: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, c, Request{Args: []string{"push"}}, started, io.Discard, nil)
		done <- err
	}()
	<-started.ch
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want context.Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(opmtest.WaitTimeout):
		t.Fatal("the command was not cancelled")
	}
}

type notifyWriter struct{ ch chan struct{} }

func (w *notifyWriter) Write(p []byte) (int, error) {
	select {
	case <-w.ch:
	default:
		close(w.ch)
	}
	return len(p), nil
}

// A socket whose daemon died (no one holds the lock) is removed, and the
// caller opens the home itself.
func TestStaleSocket(t *testing.T) {
	home := t.TempDir()
	path := registry.PathsOf(home).Socket()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket gone already: %v", err)
	}
	c, err := Dial(home)
	if c != nil || err != nil {
		t.Fatalf("Dial: %v %v, want no daemon", c, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale socket still there: %v", err)
	}
	// No socket at all: no daemon either.
	if c, err := Dial(home); c != nil || err != nil {
		t.Fatalf("Dial: %v %v, want no daemon", c, err)
	}
	// A new daemon replaces a stale socket.
	ln, _ = net.Listen("unix", path)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	serve(t, home, func(context.Context, Request, io.Writer, io.Writer, func(Progress)) Result { return Result{} })
	c, err = Dial(home)
	if err != nil || c == nil {
		t.Fatalf("dial the new daemon: %v %v", c, err)
	}
	c.Close()
}

// A second owner of a home is refused with a message naming the first.
func TestSecondOwnerRefused(t *testing.T) {
	home := t.TempDir()
	if Held(home) {
		t.Fatal("held before anyone took it")
	}
	lock, err := Acquire(home, Info{PID: 4242, Mountpoint: "/mnt/first", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if !Held(home) {
		t.Error("not held while locked")
	}
	_, err = Acquire(home, Info{PID: 1, Mountpoint: "/mnt/second"})
	if !errors.Is(err, opm.ErrLocked) || !strings.Contains(err.Error(), "4242") || !strings.Contains(err.Error(), "/mnt/first") {
		t.Errorf("second Acquire: %v", err)
	}
	lock.Release()
	if Held(home) {
		t.Error("held after Release")
	}
	lock2, err := Acquire(home, Info{PID: 1, Mountpoint: "/mnt/second"})
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	lock2.Release()
}

func TestFrameLimit(t *testing.T) {
	var b bytes.Buffer
	b.Write([]byte{frameStdout, 0xff, 0xff, 0xff, 0xff})
	if _, _, err := readFrame(&b); err == nil {
		t.Error("a 4 GiB frame was accepted")
	}
}

// A client probing the lock (Held takes it shared for an instant) does not
// make a daemon starting at that moment believe the home is taken.
func TestAcquireDuringProbe(t *testing.T) {
	home := t.TempDir()
	f, err := os.OpenFile(registry.PathsOf(home).DaemonLock(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	// The probe lets go once Acquire is at it (this process has the lock
	// file open a second time: Acquire's descriptor), not after a guessed
	// delay: its release lands within Acquire's tries.
	lockPath, err := filepath.EvalSymlinks(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	acquired, released := make(chan struct{}), make(chan error, 1)
	go func() {
		err := opmtest.Wait("Acquire to open "+lockPath, func() error {
			select {
			case <-acquired:
				return nil // Acquire gave up (the test fails on its error)
			default:
			}
			if n := openCount(lockPath); n < 2 {
				return fmt.Errorf("open %d times in this process", n)
			}
			return nil
		})
		syscall.Flock(fd, syscall.LOCK_UN)
		released <- err
	}()
	lock, err := Acquire(home, Info{PID: 1, Mountpoint: "/mnt/x"})
	close(acquired)
	if werr := <-released; werr != nil { // before f.Close
		t.Error(werr)
	}
	if err != nil {
		t.Fatalf("Acquire while probed: %v", err)
	}
	lock.Release()
}

// openCount is how many descriptors of this process are open on path.
func openCount(path string) int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

// TestAcquireRecordFails: a lock whose owner record cannot be written is
// not taken (the write's error used to be shadowed and dropped, so the
// daemon ran with a lock that named no one). /dev/full cannot be
// truncated or written.
func TestAcquireRecordFails(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	home := t.TempDir()
	if err := os.Symlink("/dev/full", registry.PathsOf(home).DaemonLock()); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(home, Info{PID: os.Getpid(), Mountpoint: "/mnt"})
	if err == nil {
		l.Release()
		t.Fatal("took a lock whose owner record could not be written")
	}
}
