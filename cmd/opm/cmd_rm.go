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
		Description: `When the tag holds the last copy of a manifest that an index of its
repository names (a platform of a multi-platform image), the manifest is kept
by digest (NS/PROJECT/REPO@sha256:...) in the same commit, and a line says so:
the index stays whole. After the index, it is deleted by digest over HTTP
(DELETE /v2/NS/PROJECT/REPO/manifests/sha256:..., docs/http.md).

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
