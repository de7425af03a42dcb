// Command opm is the opm registry's command-line interface.
//
// Each command has a file of its own, cmd_<name>.go (a subcommand
// cmd_<parent>_<name>.go), in restic's manner: it defines the cli.Command
// and runName, which does the work. The command's Action only checks the
// arguments, reads the flags into an options struct and calls runName with
// the global options (globals). exit.go turns errors into exit codes
// through the error table.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := newApp(os.Stdout, os.Stderr)
	err := app.RunContext(ctx, permuteArgs(app, os.Args))
	stop()
	if err != nil {
		printError(os.Stderr, os.Args, opm.KindOf(err).Name, exitCode(err), opm.OneLine(err))
	}
	os.Exit(exitCode(err))
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "opm",
		Usage:   "a git-native, content-addressed package registry read through the filesystem",
		Version: version,
		Description: `Packages are addressed namespace/project/repository:tag (or @sha256:<hex>).
Metadata lives in a git repository (every change a commit), content in
content-addressed blobs. With no remote configured, the home directory is a
complete local registry.

Exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 not found,
4 conflict, 5 integrity failure, 6 already exists, 7 home locked or mount
busy (opm umount), 8 problems found (opm fsck), 9 permission denied.`,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     false,
		Suggest:         true,
		ExitErrHandler:  func(*cli.Context, error) {}, // main prints and exits
		OnUsageError:    usageError,
		CommandNotFound: commandNotFound,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "home",
				Usage:   "registry home `DIR` (default $XDG_DATA_HOME/opm or ~/.local/share/opm)",
				EnvVars: []string{"OPM_HOME"},
			},
		},
		Commands: []*cli.Command{
			initCommand(),
			pushCommand(),
			pullCommand(),
			lsCommand(),
			inspectCommand(),
			filesCommand(),
			tagCommand(),
			rmCommand(),
			logCommand(),
			configCommand(),
			versionCommand(),
			mountCommand(),
			umountCommand(),
			siteCommand(),
			serveCommand(),
			remoteCommand(),
			signersCommand(),
			statusCommand(),
			timestampCommand(),
			syncCommand(),
			cacheCommand(),
			fsckCommand(),
			gcCommand(),
		},
	}
	// A bad flag is a one-line usage error (exit 2), not a page of help.
	setUsageError(app.Commands)
	return app
}

func setUsageError(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		setUsageError(c.Subcommands)
	}
}

// globalOptions is what every command shares: its context (which carries
// the daemon's run when the daemon carries the command out; see
// runningInDaemon), --home, and where its output goes.
type globalOptions struct {
	ctx    context.Context
	home   string // --home or $OPM_HOME; "" means the default home
	stdout io.Writer
	stderr io.Writer
}

// globals reads the global options of the command c runs.
func globals(c *cli.Context) globalOptions {
	return globalOptions{ctx: c.Context, home: c.String("home"), stdout: c.App.Writer, stderr: c.App.ErrWriter}
}

// openHome opens the registry named by --home / $OPM_HOME / the default.
func openHome(g globalOptions) (*registry.Registry, error) {
	dir := g.home
	if dir == "" {
		var err error
		if dir, err = registry.DefaultHome(); err != nil {
			return nil, err
		}
	}
	return registry.Open(g.ctx, dir)
}

// withHome runs fn with the home open and closes it after.
// While a daemon owns the home, fn runs there instead (see viaDaemon).
func withHome(g globalOptions, fn func(*registry.Registry) error) error {
	if handled, err := viaDaemon(g, fn); handled {
		return err
	}
	r, err := openHome(g)
	if err != nil {
		return err
	}
	err = fn(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return err
}

// resolvePackage resolves a REF argument (a tag or digest reference).
func resolvePackage(g globalOptions, arg string) (*registry.Package, error) {
	ref, err := opm.ParseReference(arg)
	if err != nil {
		return nil, err
	}
	var p *registry.Package
	err = withHome(g, func(r *registry.Registry) error {
		p, err = r.Resolve(ref)
		return err
	})
	return p, err
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, min, max int) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		want := fmt.Sprintf("%d", min)
		switch {
		case max < 0:
			want = fmt.Sprintf("at least %d", min)
		case max != min:
			want = fmt.Sprintf("%d to %d", min, max)
		}
		return usagef("%s takes %s argument(s), got %d; usage: opm %s %s", c.Command.Name, want, n, c.Command.Name, c.Command.ArgsUsage)
	}
	return nil
}
