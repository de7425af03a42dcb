package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/openpm/opm"
	"github.com/openpm/opm/daemon"
	"github.com/openpm/opm/registry"
)

// TestDaemonCommandEnv: a command the daemon runs for a client commits as
// the client's $GIT_AUTHOR_NAME and takes its $SOURCE_DATE_EPOCH, and the
// daemon's own environment never changes meanwhile (an HTTP push it serves
// at that moment reads it: it once took the client's author).
func TestDaemonCommandEnv(t *testing.T) {
	t.Setenv("GIT_AUTHOR_NAME", "Daemon Owner")
	t.Setenv("GIT_AUTHOR_EMAIL", "owner@example.org")
	t.Setenv("SOURCE_DATE_EPOCH", "") // restored when the test ends
	os.Unsetenv("SOURCE_DATE_EPOCH")
	dir := t.TempDir()
	r, home := daemonHome(t, dir, map[string]string{"a.txt": "a"})

	// Watch the daemon's environment while the command runs.
	var changed atomic.Value
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if v := os.Getenv("GIT_AUTHOR_NAME"); v != "Daemon Owner" {
				changed.Store(v)
			}
		}
	}()
	c, err := daemon.Dial(home)
	if err != nil || c == nil {
		t.Fatalf("dial: %v %v", c, err)
	}
	defer c.Close()
	var out bytes.Buffer
	req := daemon.Request{
		Args: []string{"push", "acme/env/pkg:v1", "pkg"},
		Cwd:  dir,
		Env:  []string{"GIT_AUTHOR_NAME=Client Person", "GIT_AUTHOR_EMAIL=client@example.org", "SOURCE_DATE_EPOCH=86400"},
	}
	res, err := daemon.Run(context.Background(), c, req, &out, &out, nil)
	close(stop)
	<-watched
	if err != nil || res.Code != 0 {
		t.Fatalf("push through the daemon: %v %+v\n%s", err, res, out.String())
	}
	if v := changed.Load(); v != nil {
		t.Errorf("the daemon's $GIT_AUTHOR_NAME was %q while the client's command ran", v)
	}
	log, err := exec.Command("git", "-C", filepath.Join(home, "meta.git"), "log", "-1", "--format=%an <%ae>").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(log)); got != "Client Person <client@example.org>" {
		t.Errorf("commit author %q, want the client's", got)
	}
	ref, err := opm.ParseReference("acme/env/pkg:v1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Manifest.Annotations[opm.AnnotationCreated]; got != "1970-01-02T00:00:00Z" {
		t.Errorf("created %q, want the client's SOURCE_DATE_EPOCH", got)
	}
}

// TestDaemonProgress: the progress of a command the daemon runs is sent to
// the client that asked for it (its stderr is a terminal), which draws it
// with the one renderer; a client that did not ask gets none. (The daemon
// used to draw it on its own stderr, the daemon's log.)
func TestDaemonProgress(t *testing.T) {
	dir := t.TempDir()
	_, home := daemonHome(t, dir, map[string]string{"a": strings.Repeat("a", 1000), "b": strings.Repeat("b", 1000), "c": strings.Repeat("c", 1000)})
	push := func(tag string, asked bool) []daemon.Progress {
		c, err := daemon.Dial(home)
		if err != nil || c == nil {
			t.Fatalf("dial: %v %v", c, err)
		}
		defer c.Close()
		var out bytes.Buffer
		var events []daemon.Progress
		req := daemon.Request{Args: []string{"push", "acme/p/pkg:" + tag, "pkg"}, Cwd: dir, Progress: asked}
		res, err := daemon.Run(context.Background(), c, req, &out, &out, func(ev daemon.Progress) { events = append(events, ev) })
		if err != nil || res.Code != 0 {
			t.Fatalf("push through the daemon: %v %+v\n%s", err, res, out.String())
		}
		return events
	}
	events := push("v1", true)
	var added int64
	for _, ev := range events {
		if ev.Op == "add" {
			added += ev.Bytes
		}
	}
	if len(events) < 3 || events[0] != (daemon.Progress{Op: "start", Verb: "push", Files: 3, Bytes: 3000}) ||
		events[len(events)-1].Op != "done" || added != 3000 {
		t.Errorf("progress of a push through the daemon: %+v", events)
	}
	var drawn bytes.Buffer
	draw := drawRemote(&drawn)
	for _, ev := range events {
		draw(ev)
	}
	if !strings.Contains(drawn.String(), "push 3 files") {
		t.Errorf("the client drew %q", drawn.String())
	}
	if events := push("v2", false); len(events) != 0 {
		t.Errorf("progress sent to a client that draws none: %+v", events)
	}
}

// daemonHome opens a home in dir with a package directory dir/pkg of the
// given files, and serves it as a daemon would until the test ends.
func daemonHome(t *testing.T, dir string, files map[string]string) (*registry.Registry, string) {
	t.Helper()
	home := filepath.Join(dir, "home")
	r, err := registry.Open(context.Background(), home)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	pkg := filepath.Join(dir, "pkg")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(pkg, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := daemon.Listen(home, runInDaemon(r, func() {}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return r, home
}
