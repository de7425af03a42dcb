package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the registry home (idempotent; other commands do it on first use)",
		Description: `Creates <home>/meta.git (a bare git repository) and <home>/blobs; the index
is made by the first command that needs it.

Example:
   opm --home /srv/opm init`,
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			return runInit(globals(c), c.Bool("json"))
		},
	}
}

// runInit opens the home, which creates it, and prints its path.
func runInit(g globalOptions, asJSON bool) error {
	return withHome(g, func(r *registry.Registry) error {
		if asJSON {
			return printJSON(g, map[string]string{"home": r.Home()})
		}
		fmt.Fprintln(g.stdout, r.Home())
		return nil
	})
}
