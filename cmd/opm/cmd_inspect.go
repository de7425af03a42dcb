package main

import (
	"github.com/urfave/cli/v2"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print a package's manifest, byte for byte",
		ArgsUsage: "REF",
		Description: `The manifest is an OCI image manifest; its sha256 is the package digest.

Example:
   opm inspect acme/web/site:v1.2.0 | jq .layers[].annotations`,
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			return runInspect(globals(c), c.Args().First())
		},
	}
}

// runInspect prints the manifest of the package ref names.
func runInspect(g globalOptions, ref string) error {
	p, err := resolvePackage(g, ref)
	if err != nil {
		return err
	}
	_, err = g.stdout.Write(p.Bytes)
	return err
}
