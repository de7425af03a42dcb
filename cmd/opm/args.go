package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs puts every flag where urfave/cli reads it, so that flags go
// anywhere, as in git and docker: `opm pull REF -o DIR` as well as
// `opm pull -o DIR REF` (urfave/cli stops reading flags at the first
// positional argument), a global flag after the command (`opm ls acme
// --home DIR`) and a command's flag before it (`opm --json ls`). The
// command is the deepest subcommand named (`opm remote add NAME --meta U`).
// A flag is the command's if it has one of that name, else global if opm
// has one, else left to the command to report. A lone "--" ends the flags.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var global, early, names, flags, positional []string
	var cmd *cli.Command
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			dst, set := &flags, []cli.Flag(nil)
			switch {
			case cmd != nil && hasFlag(cmd.Flags, a):
				set = cmd.Flags
			case hasFlag(app.Flags, a):
				dst, set = &global, app.Flags
			case cmd == nil:
				dst = &early // before the command: known once it is
			}
			*dst = append(*dst, a)
			if takesValue(set, a) && i+1 < len(args) {
				i++
				*dst = append(*dst, args[i])
			}
		case cmd == nil && names == nil:
			names = append(names, a)
			if cmd = app.Command(a); cmd == nil {
				// Unknown: urfave/cli says so; the rest as given.
				return append(append(append([]string{args[0]}, global...), args[i:]...), early...)
			}
		case len(positional) == 0 && cmd.Command(a) != nil:
			cmd = cmd.Command(a)
			names = append(names, a)
		default:
			positional = append(positional, a)
		}
	}
	out := append([]string{args[0]}, global...)
	if cmd == nil {
		return append(out, early...)
	}
	out = append(out, names...)
	return append(append(append(out, early...), flags...), positional...)
}

// hasFlag reports whether arg ("-o", "--home=DIR") names one of flags.
func hasFlag(flags []cli.Flag, arg string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// takesValue reports whether arg names a flag that takes a separate value
// ("-o DIR", not "-o=DIR", not a bool flag).
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				if g, ok := f.(*cli.GenericFlag); ok {
					b, ok := g.Value.(interface{ IsBoolFlag() bool })
					return !ok || !b.IsBoolFlag()
				}
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
