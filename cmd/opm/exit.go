package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
)

// Exit codes are part of opm's interface: scripts rely on them. Each kind of
// error has one, in the error table (opm.Kinds; README.md "Exit codes").

// usagef is a command-line mistake: exit 2.
func usagef(format string, args ...any) error {
	return opm.Errorf(opm.ErrUsage, format, args...)
}

// exitCode is the one place errors become exit codes: the daemon's own
// mapping for a command it ran, else the error table's.
func exitCode(err error) int {
	var de *daemonError
	if errors.As(err, &de) {
		return de.code
	}
	return opm.KindOf(err).Exit
}

func usageError(c *cli.Context, err error, isSubcommand bool) error {
	return usagef("%v (see 'opm %s--help')", err, cmdName(c))
}

func commandNotFound(c *cli.Context, name string) {
	fmt.Fprintf(c.App.ErrWriter, "opm: unknown command %q (see 'opm --help')\n", name)
	cli.OsExiter(opm.KindOf(opm.ErrUsage).Exit)
}

func cmdName(c *cli.Context) string {
	if c.Command != nil && c.Command.Name != "" {
		return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ") + " "
	}
	return ""
}
