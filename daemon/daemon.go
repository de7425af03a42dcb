// Package daemon lets one process own a registry home and carry out the
// CLI commands of every other process on it.
//
// While `opm mount` runs it holds <home>/opm.lock (an flock, with a JSON
// Info naming it) and serves <home>/opm.sock. A CLI command that finds the
// socket sends its arguments, working directory and the environment that
// changes what a command writes (ForwardedEnv); the daemon runs the command
// in its own process, streams stdout and stderr back, and ends with the exit
// code and error line. A socket left by a killed daemon is recognised (no
// one holds the lock) and removed.
//
// The wire format is a sequence of frames: one kind byte, a big-endian
// uint32 length, the payload.
//
//	client → daemon   'q' Request (JSON)
//	daemon → client   'o' stdout bytes, 'e' stderr bytes, 'p' Progress (JSON)
//	                  (any number, in any order), then 'x' Result (JSON)
//
// Progress frames come only when the request says the client draws
// progress (its stderr is a terminal): the client draws it there.
//
// The client closing its end cancels the command.
//
// A request may instead ask the daemon to take its mount down (opm umount,
// Request.Unmount): the daemon's main loop receives it (Server.Unmounts)
// and answers with one Result, sent after the home is released when the
// unmount succeeded (docs/mount.md, "Unmounting").
package daemon

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/flock"
	"github.com/openpm/opm/registry"
)

// ForwardedEnv are the environment variables of the client a command run
// by the daemon reads (Request.Getenv), in place of the daemon's own: the
// daemon's environment is never changed, as an HTTP push it serves at the
// same moment would read it. SSH_AUTH_SOCK: the client's ssh-agent signs
// its commits (gitmeta.SigningKey).
var ForwardedEnv = []string{"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "SOURCE_DATE_EPOCH", "SSH_AUTH_SOCK"}

// Info names a running daemon.
type Info struct {
	PID        int       `json:"pid"`
	Mountpoint string    `json:"mountpoint"`
	Started    time.Time `json:"started"`
}

// Lock is a home held by this process.
type Lock struct {
	f *flock.File
}

// Acquire takes the home for this process and records info in the lock
// file. If another daemon holds it, Acquire fails with opm.ErrLocked and a
// message naming that daemon.
func Acquire(home string, info Info) (*Lock, error) {
	f, err := flock.Open(registry.PathsOf(home).DaemonLock(), true)
	if err != nil {
		return nil, err
	}
	// A client asking whether a daemon runs (Dial, Held, Running) holds the
	// lock shared for an instant: a daemon starting just then must not take
	// that for another daemon.
	ctx, cancel := context.WithTimeout(context.Background(), acquireWait)
	err = f.Wait(ctx, flock.Exclusive)
	cancel()
	if err != nil {
		defer f.Close()
		if !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		other, ok := readInfo(f)
		if !ok {
			return nil, opm.Errorf(opm.ErrLocked, "home %s is held by another opm daemon (%s; opm umount MOUNTPOINT stops it, fuser -v %s names it)", home, f.Name(), f.Name())
		}
		return nil, opm.Errorf(opm.ErrLocked, "home %s is served by the opm daemon pid %d mounted at %s (opm umount %s stops it)", home, other.PID, other.Mountpoint, other.Mountpoint)
	}
	b, _ := json.Marshal(info)
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(b, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return &Lock{f: f}, nil
}

// acquireWait is how long Acquire keeps trying a lock that is taken.
const acquireWait = 250 * time.Millisecond

// Release lets the home go.
func (l *Lock) Release() error {
	l.f.Truncate(0)
	return l.f.Close() // closing the file drops the flock
}

// Held reports whether a live process holds the home's lock.
func Held(home string) bool { return !whileFree(home, nil) }

// Running returns the Info of the daemon that holds the home, if one does
// and has named itself.
func Running(home string) (Info, bool) {
	f, err := flock.Open(registry.PathsOf(home).DaemonLock(), false)
	if err != nil {
		return Info{}, false
	}
	defer f.Close() // drops the lock, if taken below
	if free, err := f.TryLock(flock.Shared); free || err != nil {
		return Info{}, false // free (or not lockable): no daemon
	}
	return readInfo(f)
}

// readInfo reads the Info a lock file holds; false when its owner has not
// (or not yet) named itself.
func readInfo(f io.Reader) (Info, bool) {
	var info Info
	b, err := io.ReadAll(f)
	if err != nil || json.Unmarshal(b, &info) != nil || info.PID == 0 {
		return Info{}, false
	}
	return info, true
}

// whileFree reports whether no live process holds the home's lock and, if
// none does, runs fn (when not nil) holding it shared, so that no daemon
// can take the home until fn returns.
func whileFree(home string, fn func()) bool {
	if fn == nil {
		fn = func() {}
	}
	f, err := flock.Open(registry.PathsOf(home).DaemonLock(), false)
	if err != nil {
		fn() // no lock file: no daemon has run here
		return true
	}
	defer f.Close() // drops the lock
	if free, err := f.TryLock(flock.Shared); !free && err == nil {
		return false
	}
	fn()
	return true
}

// Request is one CLI command for the daemon.
type Request struct {
	Args []string `json:"args"` // without the program name
	Cwd  string   `json:"cwd"`  // relative paths in Args are relative to it
	Env  []string `json:"env"`  // KEY=VALUE of ForwardedEnv
	// Progress: the client draws progress (its stderr is a terminal), so
	// the daemon sends Progress frames.
	Progress bool `json:"progress,omitempty"`
	// Unmount, when set, asks the daemon to take its mount down instead of
	// running a command.
	Unmount *UnmountRequest `json:"unmount,omitempty"`
}

// UnmountRequest asks the daemon to take down its mount.
type UnmountRequest struct {
	Mountpoint string `json:"mountpoint"` // the mount the client means: the daemon refuses another
	Lazy       bool   `json:"lazy,omitempty"`
}

// Progress is one event of a long command's progress, drawn by the client
// on its own terminal.
type Progress struct {
	Op    string `json:"op"`              // "start", "add" or "done"
	Verb  string `json:"verb,omitempty"`  // start: what is being done (push, pull, …)
	Files int    `json:"files,omitempty"` // start: how many files or blobs
	Bytes int64  `json:"bytes,omitempty"` // start: the total; add: the bytes done since the last event
}

// Getenv returns the client's value of the variable k of ForwardedEnv,
// "" if it has none.
func (r Request) Getenv(k string) string {
	for _, kv := range r.Env {
		if key, v, ok := strings.Cut(kv, "="); ok && key == k {
			return v
		}
	}
	return ""
}

// Result is how a command ended.
type Result struct {
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"` // the error line, when Code != 0
	Kind  string `json:"kind,omitempty"`  // its kind's name in opm's error table (opm.Kinds)
}

// Environ returns this process's values of ForwardedEnv.
func Environ() []string {
	var env []string
	for _, k := range ForwardedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Frame kinds.
const (
	frameRequest  = 'q'
	frameStdout   = 'o'
	frameStderr   = 'e'
	frameProgress = 'p'
	frameResult   = 'x'
)

const maxFrame = 16 << 20

func writeFrame(w io.Writer, kind byte, p []byte) error {
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes: protocol error", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return h[0], p, err
}

// streamWriter sends what is written to it as frames of one kind.
type streamWriter struct {
	mu   *sync.Mutex
	w    io.Writer
	kind byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rest := p; len(rest) > 0; {
		n := min(len(rest), maxFrame)
		if err := writeFrame(s.w, s.kind, rest[:n]); err != nil {
			return len(p) - len(rest), err
		}
		rest = rest[n:]
	}
	return len(p), nil
}
