package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the registry home (idempotent; other commands do it on first use)",
		Description: `Creates <home>/meta.git (a bare git repository), <home>/blobs and the index.

Example:
   opm --home /srv/opm init`,
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			return withHome(c, func(r *registry.Registry) error {
				fmt.Fprintln(c.App.Writer, r.Home())
				return nil
			})
		},
	}
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:      "config",
		Usage:     "read or set a setting of the home (git config of meta.git)",
		ArgsUsage: "KEY [VALUE]",
		Description: `Settings are git configuration of <home>/meta.git, so
'git config -f <home>/meta.git/config KEY VALUE' does the same.

Keys:
   opm.blobs     bucket URL holding the registry's blobs (file://, s3://, gs://, azblob://, mem://)
   user.name     author of the commits this home makes
   user.email
   cache.quota   size limit of the local blob store: 20GiB, 500MB, bytes, or 10% (see opm cache)
   cache.pin     a pinned tag pattern (one line each; use opm cache pin/unpin)

Example:
   opm config opm.blobs 's3://bucket?region=eu-west-1'
   opm config opm.blobs
   opm config --unset opm.blobs`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "unset", Usage: "remove the key"}},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 2); err != nil {
				return err
			}
			key := c.Args().First()
			return withHome(c, func(r *registry.Registry) error {
				switch {
				case c.Bool("unset"):
					return r.SetConfig(key, "")
				case c.NArg() == 2:
					return r.SetConfig(key, c.Args().Get(1))
				}
				v, err := r.Config(key)
				if err != nil {
					return err
				}
				if v == "" {
					return opm.Errorf(opm.ErrNotFound, "%s is not set", key)
				}
				fmt.Fprintln(c.App.Writer, v)
				return nil
			})
		},
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print opm's version",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "opm %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
			return nil
		},
	}
}
