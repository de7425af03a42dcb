package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/daemon"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/registry"
)

// readyFDEnv names the file descriptor on which a daemon started by
// `opm mount --daemon` reports that its mount is ready (or why it failed).
const readyFDEnv = "OPM_DAEMON_READY_FD"

// daemonMemoryLimit is the soft limit the daemon gives Go's collector
// unless GOMEMLIMIT says otherwise. A daemon walked over 100k files holds
// about 100 MB live; with the collector's default pacing its peak RSS was
// 280–300 MB, with this limit 192–198 MB for the same walk in the same time
// (bench MountWalk100kFiles). It is soft: a larger registry's live heap
// passes it, and the collector then spends at most half the CPU trying.
const daemonMemoryLimit = 128 << 20

// runDaemon owns the home, mounts it and serves the control socket until
// the mount goes away or ctx is cancelled (SIGINT, SIGTERM). It calls ready
// once both are up. The opm umount that took the mount down is answered
// after the home is let go, so that it returns only then.
func runDaemon(ctx context.Context, o mountOptions, ready func(error)) error {
	var by *daemon.UnmountCall
	err := serveMount(ctx, o, ready, &by)
	if by != nil {
		res := daemon.Result{}
		if err != nil {
			res = daemon.Result{Code: exitCode(err), Error: opm.OneLine(err)}
		}
		by.Reply(res)
	}
	return err
}

// serveMount is runDaemon until the home is let go; *by is set to the
// unmount request that ended it, if one did.
func serveMount(ctx context.Context, o mountOptions, ready func(error), by **daemon.UnmountCall) error {
	log := slog.Default()
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(daemonMemoryLimit)
	}
	if err := os.MkdirAll(o.home, 0o755); err != nil {
		return err
	}
	lock, err := daemon.Acquire(o.home, daemon.Info{PID: os.Getpid(), Mountpoint: o.dir, Started: time.Now()})
	if err != nil {
		return err
	}
	defer lock.Release()
	r, err := registry.Open(ctx, o.home)
	if err != nil {
		return err
	}
	defer r.Close()
	// The daemon holds the index for its whole life; commands share it.
	if err := r.Own(ctx); err != nil {
		return err
	}
	if err := tidyHome(r, o.dir, log); err != nil {
		return err
	}
	// What the mount will show of origin must have been verified.
	if err := r.CheckTrust(ctx); err != nil {
		return err
	}
	fo := fsOptions(o, log)
	if o.requireFresh {
		// Every open must reach this process to be refused: no overlay
		// (its opens never do), no open without asking.
		fo.Fresh, fo.NoOverlay, fo.NoOpen = r.Fresh, true, false
	}
	m, err := opmfs.Mount(r, o.dir, fo)
	if err != nil {
		return err
	}
	// Reads through the kernel's overlays count for eviction as the
	// daemon's own: each open touches its blob and holds it until closed.
	if m.OverlaysOn() {
		if stop, err := r.WatchReads(log); err != nil {
			log.Warn("reads through the overlays are not counted for eviction", "err", err)
		} else {
			defer stop()
		}
	}
	// The daemon keeps the local store under its quota (cache.quota; see
	// opm cache); eviction spares the blobs open in the mount.
	defer r.KeepQuota(ctx, time.Second, 30*time.Second, log)()
	srv, err := daemon.Listen(r.Home(), runInDaemon(r, m.CountCommand), log)
	if err != nil {
		m.Unmount(true)
		m.Wait()
		return err
	}
	go srv.Serve()
	if o.httpAddr != "" {
		// Stopped before the home is closed.
		defer serveHTTPAlongside(ctx, r, o, log)()
	}
	ready(nil)
	if o.syncEvery > 0 {
		defer followOrigin(ctx, r, o.syncEvery, log)()
	}
	dm := &daemonMount{o: o, m: m, log: log}
	*by = dm.wait(ctx, srv.Unmounts())
	return srv.Close()
}

// tidyHome removes what dead processes left: temporary files of writers,
// and a dead mount at dir.
func tidyHome(r *registry.Registry, dir string, log *slog.Logger) error {
	if n, err := r.RemoveLeftovers(); err != nil {
		log.Warn("leftover temporary files not removed", "err", err)
	} else if n > 0 {
		log.Info("removed temporary files left by writers that died", "files", n)
	}
	if stale, err := opmfs.CleanStale(dir); err != nil {
		return fmt.Errorf("clean up the dead mount at %s: %w", dir, err)
	} else if stale {
		log.Info("detached a dead mount", "dir", dir)
	}
	return nil
}

// fsOptions are the filesystem's options for the mount o: the defaults,
// changed by o's flags and environment.
func fsOptions(o mountOptions, log *slog.Logger) opmfs.Options {
	fo := opmfs.DefaultOptions()
	fo.AllowOther, fo.Logger = o.allowOther, log
	fo.Passthrough = fo.Passthrough && o.passthrough
	fo.NoXattr = fo.NoXattr && !o.xattr
	fo.NoOpen = fo.NoOpen && o.noOpen
	fo.NoOverlay = fo.NoOverlay || o.noOverlay
	fo.NoMetaImage = fo.NoMetaImage || o.noMetaImage
	return fo
}

// serveHTTPAlongside serves r over HTTP (opm mount --http) until the
// returned stop is called or ctx ends; stop returns once it has stopped.
func serveHTTPAlongside(ctx context.Context, r *registry.Registry, o mountOptions, log *slog.Logger) (stop func()) {
	hctx, stopHTTP := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		so := serveOptions{Addr: o.httpAddr, Token: o.httpToken, ReadToken: o.httpReadToken}
		if err := serveHTTP(hctx, r, so, os.Stderr, nil); err != nil {
			log.Error("http", "addr", o.httpAddr, "err", err)
		}
	}()
	return func() { stopHTTP(); <-served }
}

// daemonMount is a mount its daemon serves, as it waits for it to go.
type daemonMount struct {
	o        mountOptions
	m        *opmfs.FS
	log      *slog.Logger
	detached bool // by opm umount --lazy: the mount goes when its files are closed
}

// wait answers the unmount requests calls brings until the mount is gone:
// unmounted from outside (umount(8)), at the end of ctx, or by an opm
// umount, whose request it returns unanswered (runDaemon answers it once
// the home is let go).
func (d *daemonMount) wait(ctx context.Context, calls <-chan *daemon.UnmountCall) *daemon.UnmountCall {
	unmounted := make(chan struct{})
	go func() {
		d.m.Wait()
		close(unmounted)
	}()
	for {
		select {
		case <-unmounted:
			d.log.Info("unmounted", "dir", d.o.dir)
			return nil
		case <-ctx.Done():
			d.log.Info("stopping", "dir", d.o.dir)
			if err := d.m.Unmount(false); err != nil {
				d.log.Warn("mount busy, detaching it", "dir", d.o.dir, "err", err)
				if err := d.m.Unmount(true); err != nil {
					d.log.Error("detach", "dir", d.o.dir, "err", err)
				}
			}
			<-unmounted
			return nil
		case call := <-calls:
			if !d.unmount(call) {
				continue
			}
			<-unmounted
			d.log.Info("unmounted on request", "dir", d.o.dir)
			return call
		}
	}
}

// unmount does what call asks and reports whether the mount is now going
// away; otherwise (refused, failed or detached) it has answered call.
func (d *daemonMount) unmount(call *daemon.UnmountCall) (going bool) {
	switch {
	case !opmfs.SameMountpoint(call.Mountpoint, d.o.dir):
		call.Reply(daemon.Result{Code: opm.KindOf(opm.ErrNotFound).Exit,
			Error: fmt.Sprintf("the opm daemon of %s serves %s, not %s", d.o.home, d.o.dir, call.Mountpoint)})
		return false
	case d.detached:
		call.Reply(daemon.Result{Code: opm.KindOf(opm.ErrBusy).Exit,
			Error: fmt.Sprintf("%s is detached already; its daemon exits once the last file open there is closed", d.o.dir)})
		return false
	}
	if err := d.m.Unmount(call.Lazy); err != nil {
		d.log.Warn("unmount refused", "dir", d.o.dir, "lazy", call.Lazy, "err", err)
		call.Reply(daemon.Result{Code: exitCode(err), Error: opm.OneLine(err)})
		return false
	}
	if call.Lazy {
		d.log.Info("detached on request", "dir", d.o.dir)
		d.detached = true
		call.Reply(daemon.Result{})
		return false
	}
	return true
}

// readyReport tells the process that started this daemon (opm mount
// --daemon) whether the mount came up. It does nothing in the foreground.
type readyReport struct {
	f *os.File
}

func readyPipe() *readyReport {
	fd := os.Getenv(readyFDEnv)
	if fd == "" {
		return &readyReport{}
	}
	os.Unsetenv(readyFDEnv)
	n, err := strconv.Atoi(fd)
	if err != nil || n < 3 {
		// Not one startDaemon passed: never write to stdin, stdout or stderr.
		slog.Warn("ignoring "+readyFDEnv, "value", fd)
		return &readyReport{}
	}
	return &readyReport{f: os.NewFile(uintptr(n), "ready")}
}

// done reports the outcome once; later calls do nothing.
func (r *readyReport) done(err error) {
	if r.f == nil {
		return
	}
	res := daemon.Result{}
	if err != nil {
		res = daemon.Result{Code: exitCode(err), Error: opm.OneLine(err)}
	}
	b, _ := json.Marshal(res)
	r.f.Write(b)
	r.f.Close()
	r.f = nil
}

// startDaemon runs `opm mount` again in the background, detached from the
// terminal, with its output in <home>/opm.log, and returns once it reports
// the mount ready.
func startDaemon(o mountOptions, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.home, 0o755); err != nil {
		return err
	}
	logPath := registry.PathsOf(o.home).Log()
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd := exec.Command(exe, daemonArgs(o)...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return err
	}
	go cmd.Wait() // reap it if it fails early; otherwise it outlives us
	b, err := io.ReadAll(pr)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("the opm daemon exited before the mount was ready; see %s", logPath)
	}
	var res daemon.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("the opm daemon's report %q: %w", b, err)
	}
	if res.Code != 0 {
		return &daemonError{code: res.Code, msg: res.Error}
	}
	fmt.Fprintf(stderr, "opm daemon pid %d: %s mounted at %s (log: %s)\n", cmd.Process.Pid, o.home, o.dir, logPath)
	return nil
}

// daemonArgs is the command line of the daemon startDaemon starts: opm
// mount in the foreground, with o's flags.
func daemonArgs(o mountOptions) []string {
	args := []string{"--home", o.home, "mount", o.dir}
	if o.allowOther {
		args = append(args, "--allow-other")
	}
	if o.syncEvery > 0 {
		args = append(args, "--sync-interval", o.syncEvery.String())
	}
	if o.httpAddr != "" {
		args = append(args, "--http", o.httpAddr)
	}
	if o.requireFresh {
		args = append(args, "--require-fresh")
	}
	if o.httpTokenFile != "" {
		args = append(args, "--http-token-file", o.httpTokenFile)
	}
	if o.httpReadFile != "" {
		args = append(args, "--http-read-token-file", o.httpReadFile)
	}
	return args
}
