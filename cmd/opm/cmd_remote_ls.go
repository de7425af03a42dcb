package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
)

func remoteLsCommand() *cli.Command {
	return &cli.Command{
		Name:    "ls",
		Aliases: []string{"list"},
		Usage:   "list the remotes",
		Flags:   []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			return runRemoteLs(globals(c), remoteLsOptions{json: c.Bool("json")})
		},
	}
}

type remoteLsOptions struct {
	json bool
}

// runRemoteLs lists the remotes: name, metadata URL, bucket URL.
func runRemoteLs(g globalOptions, opts remoteLsOptions) error {
	return withHome(g, func(r *registry.Registry) error {
		rms, err := r.Remotes()
		if err != nil {
			return err
		}
		if opts.json {
			return printJSON(g, nonNil(rms))
		}
		tw := newTable(g.stdout)
		for _, rm := range rms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", rm.Name, rm.URL, rm.Blobs, rm.Trust)
		}
		return tw.Flush()
	})
}
