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
			src, err := opm.ParseReference(c.Args().Get(0))
			if err != nil {
				return err
			}
			dst, err := opm.ParseTagReference(c.Args().Get(1))
			if err != nil {
				return err
			}
			return withHome(c, func(r *registry.Registry) error {
				res, err := r.Tag(c.Context, src, dst)
				return reportTag(c, res, err)
			})
		},
	}
}

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove a tag (a commit; the blobs stay until garbage collection)",
		ArgsUsage: "NS/PROJECT/REPO:TAG",
		Description: `Example:
   opm rm acme/web/site:v1.0.0-rc1`,
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			ref, err := opm.ParseTagReference(c.Args().First())
			if err != nil {
				return err
			}
			return withHome(c, func(r *registry.Registry) error {
				res, err := r.Remove(c.Context, ref)
				return reportTag(c, res, err)
			})
		},
	}
}

func reportTag(c *cli.Context, res *registry.TagResult, err error) error {
	switch {
	case err != nil:
		return err
	case c.Bool("json"):
		return printJSON(c, res)
	case res.Digest != "":
		fmt.Fprintln(c.App.Writer, res.Digest)
	}
	return nil
}
