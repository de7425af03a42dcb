package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func tagCommand() *cli.Command {
	return &cli.Command{
		Name:      "tag",
		Usage:     "give a package another tag (no content is copied)",
		ArgsUsage: "SRC DST",
		Description: `SRC is a tag or digest reference; DST a tag reference, in any repository.

Example:
   opm tag acme/web/site:v1.2.0 acme/web/site:stable`,
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, 2); err != nil {
				return err
			}
			return runTag(globals(c), tagOptions{json: c.Bool("json")}, c.Args().Get(0), c.Args().Get(1))
		},
	}
}

// tagOptions are the options of opm tag and opm rm.
type tagOptions struct {
	json bool
}

// runTag tags the package src names as dst.
func runTag(g globalOptions, opts tagOptions, src, dst string) error {
	from, err := opm.ParseReference(src)
	if err != nil {
		return err
	}
	to, err := opm.ParseTagReference(dst)
	if err != nil {
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.Tag(g.ctx, from, to)
		return reportTag(g, opts, res, err)
	})
}

// reportTag prints the outcome of opm tag or opm rm.
func reportTag(g globalOptions, opts tagOptions, res *registry.TagResult, err error) error {
	switch {
	case err != nil:
		return err
	case opts.json:
		return printJSON(g, res)
	case res.Digest != "":
		fmt.Fprintln(g.stdout, res.Digest)
	}
	for _, d := range res.Kept {
		fmt.Fprintf(g.stderr, "opm: kept %s@%s by digest: an index of the repository names it\n", res.Ref.Repository, d)
	}
	return nil
}
