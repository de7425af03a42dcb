package main

import (
	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove a tag (a commit; the blobs stay until garbage collection)",
		ArgsUsage: "NS/PROJECT/REPO:TAG",
		Description: `A tag that holds the last copy of a manifest an index of its repository
names is kept (exit 4): remove the index first, as it was pushed after it.

Example:
   opm rm acme/web/site:v1.0.0-rc1`,
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			return runRm(globals(c), tagOptions{json: c.Bool("json")}, c.Args().First())
		},
	}
}

// runRm removes the tag ref names.
func runRm(g globalOptions, opts tagOptions, ref string) error {
	tag, err := opm.ParseTagReference(ref)
	if err != nil {
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.Remove(g.ctx, tag)
		return reportTag(g, opts, res, err)
	})
}
