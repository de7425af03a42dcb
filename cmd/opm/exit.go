package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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
	usage := opm.KindOf(opm.ErrUsage)
	printError(c.App.ErrWriter, os.Args, usage.Name, usage.Exit, fmt.Sprintf("unknown command %q (see 'opm --help')", name))
	cli.OsExiter(usage.Exit)
}

// printError writes the error of a failed command to w: the line
// "opm: MESSAGE", or with --json among args one JSON object (docs/json.md),
// so that scripts read failures as they read results:
//
//	{"error":{"kind":"not-found","exit":3,"message":"acme: no such namespace"}}
//
// kind is the name of its row in opm's error table (opm.Kinds), "" if not
// known.
func printError(w io.Writer, args []string, kind string, exit int, msg string) {
	if !wantsJSON(args) {
		fmt.Fprintf(w, "opm: %s\n", msg)
		return
	}
	if kind == "" {
		kind = opm.Kinds[len(opm.Kinds)-1].Name
	}
	type body struct {
		Kind    string `json:"kind"`
		Exit    int    `json:"exit"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Error body `json:"error"`
	}{body{kind, exit, msg}})
	fmt.Fprintf(w, "%s\n", b)
}

// wantsJSON reports whether a command line asks for --json (before a lone
// "--", anywhere else: flags go anywhere).
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

func cmdName(c *cli.Context) string {
	if c.Command != nil && c.Command.Name != "" && c.Command.HelpName != c.App.Name {
		return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ") + " "
	}
	return ""
}
