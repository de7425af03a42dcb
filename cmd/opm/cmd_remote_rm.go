package main

import (
	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
)

func remoteRmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Aliases:   []string{"remove"},
		Usage:     "remove a remote",
		ArgsUsage: "NAME",
		Description: "Forgets the remote, where its main was last seen, and the scratch repository of\n" +
			"mirrors into it (<home>/mirrors/NAME.git). The remote itself is not touched.",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			return runRemoteRm(globals(c), c.Bool("json"), c.Args().First())
		},
	}
}

// runRemoteRm forgets the remote name.
func runRemoteRm(g globalOptions, asJSON bool, name string) error {
	return withHome(g, func(r *registry.Registry) error {
		if err := r.RemoveRemote(name); err != nil || !asJSON {
			return err
		}
		return printJSON(g, map[string]any{"name": name, "removed": true})
	})
}
