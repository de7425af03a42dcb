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
	home := filepath.Join(dir, "home")
	r, err := registry.Open(context.Background(), home)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pkg := filepath.Join(dir, "pkg")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := daemon.Listen(home, runInDaemon(r, func() {}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()

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
