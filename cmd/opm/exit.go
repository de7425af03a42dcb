package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
)

// Exit codes. They are part of opm's interface: scripts rely on them.
const (
	exitOK        = 0
	exitError     = 1 // anything else (I/O, a remote failed, …)
	exitUsage     = 2 // bad arguments or invalid input; nothing was written
	exitNotFound  = 3 // no such tag, digest, path or blob
	exitConflict  = 4 // a concurrent change to the same tag
	exitIntegrity = 5 // bytes did not match their digest
	exitExists    = 6 // the target exists (pull without --force)
	exitLocked    = 7 // another process holds the home
	exitProblems  = 8 // opm fsck found problems (see its report)
)

// errUsage marks command-line mistakes.
var errUsage = errors.New("usage")

// errProblems marks a check that ran and found problems (opm fsck).
var errProblems = errors.New("problems found")

func usagef(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errUsage)...)
}

// exitCode is the one place errors become exit codes.
func exitCode(err error) int {
	var de *daemonError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &de): // the daemon that ran the command mapped it
		return de.code
	case errors.Is(err, errUsage), errors.Is(err, opm.ErrInvalid):
		return exitUsage
	case errors.Is(err, opm.ErrNotFound):
		return exitNotFound
	case errors.Is(err, opm.ErrConflict):
		return exitConflict
	case errors.Is(err, opm.ErrIntegrity):
		return exitIntegrity
	case errors.Is(err, opm.ErrExists):
		return exitExists
	case errors.Is(err, opm.ErrLocked):
		return exitLocked
	case errors.Is(err, errProblems):
		return exitProblems
	}
	return exitError
}

// oneLine renders an error as the single line opm prints: the sentinel
// suffixes that only serve errors.Is are dropped.
func oneLine(err error) string {
	s := err.Error()
	for _, sentinel := range []error{errUsage, errProblems, opm.ErrInvalid} {
		s = strings.TrimSuffix(s, ": "+sentinel.Error())
	}
	return strings.ReplaceAll(s, "\n", "; ")
}

func usageError(c *cli.Context, err error, isSubcommand bool) error {
	return fmt.Errorf("%v (see 'opm %s--help'): %w", err, cmdName(c), errUsage)
}

func commandNotFound(c *cli.Context, name string) {
	fmt.Fprintf(c.App.ErrWriter, "opm: unknown command %q (see 'opm --help')\n", name)
	cli.OsExiter(exitUsage)
}

func cmdName(c *cli.Context) string {
	if c.Command != nil && c.Command.Name != "" {
		return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ") + " "
	}
	return ""
}
