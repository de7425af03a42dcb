// Command opm is the opm registry's command-line interface.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

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
		fmt.Fprintf(os.Stderr, "opm: %s\n", oneLine(err))
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
4 conflict, 5 integrity failure, 6 already exists, 7 home locked,
8 problems found (opm fsck), 9 permission denied.`,
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

// openHome opens the registry named by --home / $OPM_HOME / the default.
func openHome(c *cli.Context) (*registry.Registry, error) {
	dir := c.String("home")
	if dir == "" {
		var err error
		if dir, err = registry.DefaultHome(); err != nil {
			return nil, err
		}
	}
	return registry.Open(c.Context, dir)
}

// withHome runs fn with the home open and closes it after.
// While a daemon owns the home, fn runs there instead (see viaDaemon).
func withHome(c *cli.Context, fn func(*registry.Registry) error) error {
	if handled, err := viaDaemon(c, fn); handled {
		return err
	}
	r, err := openHome(c)
	if err != nil {
		return err
	}
	err = fn(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return err
}

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON"}

func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONThen prints v as JSON and returns err: the result of a command
// that may have done part of its work before it failed. A failure to print
// is returned instead.
func printJSONThen(c *cli.Context, v any, err error) error {
	if perr := printJSON(c, v); perr != nil {
		return perr
	}
	return err
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
