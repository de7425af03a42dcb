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

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/daemon"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/registry"
)

// readyFDEnv names the file descriptor on which a daemon started by
// `opm mount --daemon` reports that its mount is ready (or why it failed).
const readyFDEnv = "OPM_DAEMON_READY_FD"

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount the registry read-only and serve the home as its daemon",
		ArgsUsage: "MOUNTPOINT",
		Description: `Shows <ns>/<project>/<repo>/<tag>/<files> under MOUNTPOINT; also
<repo>/@sha256:<hex>/ (a package by digest), .history/<commit>/ (the registry at
a commit) and .opm/status (JSON). The mount follows the registry's head: a
push, rm or sync shows within a second. Every write fails with EROFS.
The mounting process is the home's daemon: while it runs, every other opm
command on the home is carried out by it. It runs until 'opm umount
MOUNTPOINT', umount(8), SIGINT or SIGTERM. A mount left by a killed daemon
is cleaned up first.

Run as root, each package of the live head is served by the kernel alone
(an overlayfs mount over the package's directory, made after the first look
inside it; its bytes come straight from the local blob files) and by this
process otherwise (FUSE): see read_path in .opm/status.

Tuning knobs (environment; docs/mount.md has the measurements):
OPM_OVERLAY=0 serves everything through FUSE; OPM_OVERLAY_EROFS=0 writes
the overlays' metadata as directories, not EROFS images. OPM_FUSE_NOOPEN=0 makes the
kernel ask the daemon at every open (a round trip per open) so that FUSE
passthrough can hand it the blob file (OPM_FUSE_PASSTHROUGH=0 turns that
off too); by default the kernel opens without asking and warm reads come
from its page cache. OPM_FUSE_XATTR=1 offers each file's blob digest as
the extended attribute user.opm.digest ('opm files REF' lists them
either way); it is off because 'ls -l' then asks about the ACLs of every
file.

Example:
   opm mount --daemon /mnt/opm && ls /mnt/opm`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "daemon", Aliases: []string{"d"}, Usage: "return once mounted; the daemon runs in the background and logs to <home>/opm.log"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let every user read the mount (the kernel checks the permission bits)"},
			&cli.DurationFlag{Name: "sync-interval", Usage: "follow origin: fetch and fast-forward every `DURATION` (e.g. 30s; see opm sync)"},
			&cli.StringFlag{Name: "http", Usage: "also serve HTTP on `HOST:PORT` from the daemon, as 'opm serve' (docs/http.md)"},
			&cli.StringFlag{Name: "http-token-file", Usage: "with --http: `FILE` holding the token writes need (else read-only)"},
			&cli.StringFlag{Name: "http-read-token-file", Usage: "with --http: `FILE` holding a token reads need (closes reads)"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			o, err := newMountOptions(c)
			if err != nil {
				return err
			}
			if c.Bool("daemon") {
				return startDaemon(o, c.App.ErrWriter)
			}
			ready := readyPipe()
			err = runMount(c.Context, o, ready.done)
			ready.done(err)
			return err
		},
	}
}

func umountCommand() *cli.Command {
	return &cli.Command{
		Name:      "umount",
		Usage:     "unmount an opm mount (its daemon then exits)",
		ArgsUsage: "MOUNTPOINT",
		Description: `Asks the daemon serving MOUNTPOINT to take the mount down, and returns
once it has: the daemon stops covering packages, detaches their overlays,
unmounts FUSE and lets the home go (the next command or mount on the home
finds it free). While processes use the mount (open files, a working
directory there), nothing is unmounted: the refusal names the busiest of
them and the mount goes on serving; --lazy detaches it at once instead, and
the daemon exits when the last file open there is closed. A mount left by a
daemon that died is cleaned up directly.

Examples:
   opm umount /mnt/opm
   opm umount --lazy /mnt/opm`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "lazy", Aliases: []string{"l"}, Usage: "detach now even if files are open (MNT_DETACH)"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			dir := absPath(c, c.Args().First())
			lazy := c.Bool("lazy")
			home, isOpm := opmfs.MountedHome(dir)
			if !isOpm {
				// As root, umount(2) would take any filesystem down.
				return opm.Errorf(opm.ErrNotFound, "%s is not an opm mount", dir)
			}
			if info, ok := daemon.Running(home); ok && opmfs.SameMountpoint(info.Mountpoint, dir) {
				served, res, err := daemon.Unmount(c.Context, home, daemon.UnmountRequest{Mountpoint: dir, Lazy: lazy})
				if err != nil {
					return err
				}
				if served {
					if res.Code != 0 {
						return &daemonError{code: res.Code, msg: res.Error}
					}
					if lazy {
						fmt.Fprintf(c.App.ErrWriter, "detached %s; its daemon (pid %d) exits once the last file open there is closed\n", dir, info.PID)
					} else {
						fmt.Fprintf(c.App.ErrWriter, "unmounted %s; its daemon (pid %d) has let %s go\n", dir, info.PID, home)
					}
					return nil
				}
			}
			// No daemon serves the mount: one that died left it.
			if err := opmfs.UnmountOrphan(dir, lazy); err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "unmounted %s, left by an opm daemon that is gone\n", dir)
			return nil
		},
	}
}

// mountOptions are the settings of one mount.
type mountOptions struct {
	home          string
	dir           string
	allowOther    bool
	passthrough   bool
	xattr         bool
	noOpen        bool          // not OPM_FUSE_NOOPEN=0: opmfs.Options.NoOpen
	noOverlay     bool          // OPM_OVERLAY=0: opmfs.Options.NoOverlay
	noMetaImage   bool          // OPM_OVERLAY_EROFS=0: opmfs.Options.NoMetaImage
	syncEvery     time.Duration // follow origin this often; 0: never
	httpAddr      string        // also serve HTTP here (opm serve); "": no
	httpToken     string        // the write token of httpTokenFile
	httpTokenFile string
	httpReadToken string // the read token of httpReadFile
	httpReadFile  string
}

func newMountOptions(c *cli.Context) (mountOptions, error) {
	home, err := homeDir(c)
	if err != nil {
		return mountOptions{}, err
	}
	token, err := readToken(c, "http-token-file")
	if err != nil {
		return mountOptions{}, err
	}
	tokenFile := c.String("http-token-file")
	if tokenFile != "" {
		tokenFile = absPath(c, tokenFile)
	}
	rtok, err := readToken(c, "http-read-token-file")
	if err != nil {
		return mountOptions{}, err
	}
	readFile := c.String("http-read-token-file")
	if readFile != "" {
		readFile = absPath(c, readFile)
	}
	if (token != "" || rtok != "") && c.String("http") == "" {
		return mountOptions{}, usagef("--http-token-file and --http-read-token-file go with --http")
	}
	return mountOptions{
		httpAddr:      c.String("http"),
		httpToken:     token,
		httpTokenFile: tokenFile,
		httpReadToken: rtok,
		httpReadFile:  readFile,
		home:          home,
		dir:           absPath(c, c.Args().First()),
		allowOther:    c.Bool("allow-other"),
		passthrough:   os.Getenv("OPM_FUSE_PASSTHROUGH") != "0",
		xattr:         os.Getenv("OPM_FUSE_XATTR") == "1",
		noOpen:        os.Getenv("OPM_FUSE_NOOPEN") != "0",
		noOverlay:     os.Getenv("OPM_OVERLAY") == "0",
		noMetaImage:   os.Getenv("OPM_OVERLAY_EROFS") == "0",
		syncEvery:     c.Duration("sync-interval"),
	}, nil
}

// daemonMemoryLimit is the soft limit the daemon gives Go's collector
// unless GOMEMLIMIT says otherwise. A daemon walked over 100k files holds
// about 100 MB live; with the collector's default pacing its peak RSS was
// 280–300 MB, with this limit 192–198 MB for the same walk in the same time
// (bench MountWalk100kFiles). It is soft: a larger registry's live heap
// passes it, and the collector then spends at most half the CPU trying.
const daemonMemoryLimit = 128 << 20

// runMount owns the home, mounts it and serves the control socket until the
// mount goes away or ctx is cancelled (SIGINT, SIGTERM). It calls ready once
// both are up. The opm umount that took the mount down is answered after
// the home is let go, so that it returns only then.
func runMount(ctx context.Context, o mountOptions, ready func(error)) error {
	var by *daemon.UnmountCall
	err := serveMount(ctx, o, ready, &by)
	if by != nil {
		res := daemon.Result{}
		if err != nil {
			res = daemon.Result{Code: exitCode(err), Error: oneLine(err)}
		}
		by.Reply(res)
	}
	return err
}

// serveMount is runMount until the home is let go; *by is set to the
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
	if n, err := r.RemoveLeftovers(); err != nil {
		log.Warn("leftover temporary files not removed", "err", err)
	} else if n > 0 {
		log.Info("removed temporary files left by writers that died", "files", n)
	}
	if stale, err := opmfs.CleanStale(o.dir); err != nil {
		return fmt.Errorf("clean up the dead mount at %s: %w", o.dir, err)
	} else if stale {
		log.Info("detached a dead mount", "dir", o.dir)
	}
	fo := opmfs.DefaultOptions()
	fo.AllowOther, fo.Logger = o.allowOther, log
	fo.Passthrough = fo.Passthrough && o.passthrough
	fo.NoXattr = fo.NoXattr && !o.xattr
	fo.NoOpen = fo.NoOpen && o.noOpen
	fo.NoOverlay = fo.NoOverlay || o.noOverlay
	fo.NoMetaImage = fo.NoMetaImage || o.noMetaImage
	m, err := opmfs.Mount(r, o.dir, fo)
	if err != nil {
		return err
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
		// Serve HTTP alongside, stopped before the home is closed.
		hctx, stopHTTP := context.WithCancel(ctx)
		served := make(chan struct{})
		defer func() { stopHTTP(); <-served }()
		go func() {
			defer close(served)
			so := serveOptions{Addr: o.httpAddr, Token: o.httpToken, ReadToken: o.httpReadToken}
			if err := runServe(hctx, r, so, os.Stderr, nil); err != nil {
				log.Error("http", "addr", o.httpAddr, "err", err)
			}
		}()
	}
	ready(nil)
	if o.syncEvery > 0 {
		defer followOrigin(ctx, r, o.syncEvery, log)()
	}

	unmounted := make(chan struct{})
	go func() {
		m.Wait()
		close(unmounted)
	}()
	detached := false // by opm umount --lazy: the mount goes when its files are closed
	for {
		select {
		case <-unmounted:
			log.Info("unmounted", "dir", o.dir)
			return srv.Close()
		case <-ctx.Done():
			log.Info("stopping", "dir", o.dir)
			if err := m.Unmount(false); err != nil {
				log.Warn("mount busy, detaching it", "dir", o.dir, "err", err)
				if err := m.Unmount(true); err != nil {
					log.Error("detach", "dir", o.dir, "err", err)
				}
			}
			<-unmounted
			return srv.Close()
		case call := <-srv.Unmounts():
			switch {
			case !opmfs.SameMountpoint(call.Mountpoint, o.dir):
				call.Reply(daemon.Result{Code: opm.KindOf(opm.ErrNotFound).Exit,
					Error: fmt.Sprintf("the opm daemon of %s serves %s, not %s", o.home, o.dir, call.Mountpoint)})
				continue
			case detached:
				call.Reply(daemon.Result{Code: opm.KindOf(opm.ErrBusy).Exit,
					Error: fmt.Sprintf("%s is detached already; its daemon exits once the last file open there is closed", o.dir)})
				continue
			}
			if err := m.Unmount(call.Lazy); err != nil {
				log.Warn("unmount refused", "dir", o.dir, "lazy", call.Lazy, "err", err)
				call.Reply(daemon.Result{Code: exitCode(err), Error: oneLine(err)})
				continue
			}
			if call.Lazy {
				log.Info("detached on request", "dir", o.dir)
				detached = true
				call.Reply(daemon.Result{})
				continue
			}
			<-unmounted
			log.Info("unmounted on request", "dir", o.dir)
			*by = call
			return srv.Close()
		}
	}
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
		res = daemon.Result{Code: exitCode(err), Error: oneLine(err)}
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
	if o.httpTokenFile != "" {
		args = append(args, "--http-token-file", o.httpTokenFile)
	}
	if o.httpReadFile != "" {
		args = append(args, "--http-read-token-file", o.httpReadFile)
	}
	cmd := exec.Command(exe, args...)
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
