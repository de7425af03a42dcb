package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/openpm/opm/registry"
)

// startWait is how long a client waits for the socket of a daemon that
// holds the home but is not listening yet (it is still mounting).
const startWait = 5 * time.Second

// Dial connects to the daemon of home. It returns nil and no error when no
// daemon runs, removing the socket a dead one left behind.
func Dial(home string) (net.Conn, error) {
	path := registry.PathsOf(home).Socket()
	deadline := time.Now().Add(startWait)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("opm daemon socket: %w", err)
		}
		refused := errors.Is(err, syscall.ECONNREFUSED)
		if whileFree(home, func() {
			if refused {
				// Stale: its daemon is dead. Removed under the lock, so
				// that it cannot be the socket of a daemon starting now.
				os.Remove(path)
			}
		}) {
			return nil, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the opm daemon holds %s but does not answer on %s", home, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Run sends req over c and copies the command's output to stdout and stderr
// (and its progress events to progress, if not nil) until it ends.
// Cancelling ctx closes the connection, which cancels the command in the
// daemon.
func Run(ctx context.Context, c net.Conn, req Request, stdout, stderr io.Writer, progress func(Progress)) (Result, error) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return Result{}, err
	}
	if err := writeFrame(c, frameRequest, b); err != nil {
		return Result{}, err
	}
	for {
		kind, p, err := readFrame(c)
		if err != nil {
			if ctx.Err() != nil {
				return Result{}, ctx.Err()
			}
			return Result{}, fmt.Errorf("opm daemon went away: %w", err)
		}
		switch kind {
		case frameStdout:
			stdout.Write(p)
		case frameStderr:
			stderr.Write(p)
		case frameProgress:
			var ev Progress
			if json.Unmarshal(p, &ev) == nil && progress != nil {
				progress(ev)
			}
		case frameResult:
			var res Result
			return res, json.Unmarshal(p, &res)
		default:
			return Result{}, fmt.Errorf("opm daemon: frame kind %q: protocol error", kind)
		}
	}
}

// Unmount asks the daemon of home to take its mount down (opm umount) and
// returns its answer; when the unmount is not lazy and succeeds, the daemon
// has let the home go by then. served is false when no daemon runs.
func Unmount(ctx context.Context, home string, req UnmountRequest) (served bool, res Result, err error) {
	c, err := Dial(home)
	if err != nil || c == nil {
		return false, Result{}, err
	}
	defer c.Close()
	res, err = Run(ctx, c, Request{Unmount: &req}, io.Discard, io.Discard, nil)
	return true, res, err
}
