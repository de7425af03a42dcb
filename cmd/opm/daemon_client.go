package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/daemon"
	"github.com/openpm/opm/registry"
)

// While a daemon (opm mount) owns a home, a command on that home is carried
// out by it: withHome calls viaDaemon, which either sends the whole command
// to the daemon and exits with its outcome (in a CLI process), or hands the
// command the daemon's registry (in the daemon). Commands must make path arguments absolute with absPath, so
// that they resolve against the client's working directory.

// daemonRunKey is the context key of a command running inside the daemon.
type daemonRunKey struct{}

// daemonRun is what a command run by the daemon gets instead of its own
// process state.
type daemonRun struct {
	reg      *registry.Registry    // the daemon's open home
	cwd      string                // the client's working directory
	getenv   func(string) string   // the client's environment (daemon.ForwardedEnv)
	progress func(daemon.Progress) // sends progress to the client; nil when it draws none
}

// getenv is os.Getenv of the process that started the command: the
// client's, when the daemon carries it out.
func getenv(g globalOptions, k string) string {
	if run := runningInDaemon(g.ctx); run != nil {
		return run.getenv(k)
	}
	return os.Getenv(k)
}

func runningInDaemon(ctx context.Context) *daemonRun {
	run, _ := ctx.Value(daemonRunKey{}).(*daemonRun)
	return run
}

// viaDaemon carries out fn through the daemon if one owns the home. It
// reports false when the caller must open the home itself.
func viaDaemon(g globalOptions, fn func(*registry.Registry) error) (bool, error) {
	if run := runningInDaemon(g.ctx); run != nil {
		return true, fn(run.reg)
	}
	home, err := homeDir(g)
	if err != nil {
		return true, err
	}
	conn, err := daemon.Dial(home)
	if err != nil || conn == nil {
		return err != nil, err
	}
	defer conn.Close()
	cwd, err := os.Getwd()
	if err != nil {
		return true, err
	}
	req := daemon.Request{Args: os.Args[1:], Cwd: cwd, Env: daemon.Environ(), Progress: isTerminal(os.Stderr)}
	res, err := daemon.Run(g.ctx, conn, req, g.stdout, g.stderr, drawRemote(os.Stderr))
	if err != nil {
		return true, err
	}
	// The whole command ran in the daemon, output included, whatever the
	// caller of withHome would do next: end here with its outcome.
	if res.Code != 0 {
		printError(g.stderr, os.Args, res.Kind, res.Code, res.Error)
	}
	cli.OsExiter(res.Code)
	return true, &daemonError{code: res.Code, msg: res.Error} // only if OsExiter returns (tests)
}

// daemonError is a command's failure as reported by the daemon that ran it.
type daemonError struct {
	code int
	msg  string
}

func (e *daemonError) Error() string { return e.msg }

// runInDaemon returns the daemon's runner: the same CLI app, in this
// process, on the daemon's registry.
func runInDaemon(r *registry.Registry, counted func()) daemon.Runner {
	return func(ctx context.Context, req daemon.Request, stdout, stderr io.Writer, progress func(daemon.Progress)) daemon.Result {
		counted()
		if !filepath.IsAbs(req.Cwd) {
			// absPath resolves the client's paths against it.
			return daemon.Result{Code: opm.KindOf(opm.ErrUsage).Exit, Error: fmt.Sprintf("working directory %q of the request is not absolute", req.Cwd)}
		}
		run := &daemonRun{reg: r, cwd: req.Cwd, getenv: req.Getenv}
		if req.Progress {
			run.progress = progress
		}
		ctx = context.WithValue(ctx, daemonRunKey{}, run)
		ctx = registry.WithAuthorEnv(ctx, req.Getenv)
		app := newApp(stdout, stderr)
		err := app.RunContext(ctx, permuteArgs(app, append([]string{"opm"}, req.Args...)))
		if err == nil {
			return daemon.Result{}
		}
		return daemon.Result{Code: exitCode(err), Error: opm.OneLine(err), Kind: opm.KindOf(err).Name}
	}
}

// absPath makes a path argument absolute against the directory the command
// was started in: the client's, when the daemon carries it out.
func absPath(g globalOptions, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	if run := runningInDaemon(g.ctx); run != nil {
		return filepath.Join(run.cwd, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func absPaths(g globalOptions, ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = absPath(g, p)
	}
	return out
}

// homeDir is the absolute home directory named by --home, $OPM_HOME or the
// default.
func homeDir(g globalOptions) (string, error) {
	dir := g.home
	if dir == "" {
		var err error
		if dir, err = registry.DefaultHome(); err != nil {
			return "", err
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("home %s: %w", dir, err)
	}
	return abs, nil
}
