package main

import (
	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
)

func remoteAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "add a remote",
		ArgsUsage: "NAME --meta URL --blobs URL",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "meta", Usage: "git `URL` of the metadata"},
			&cli.StringFlag{Name: "blobs", Usage: "bucket `URL` of the blobs"},
			&cli.StringFlag{Name: "trust", Usage: "verify the remote's commits from the key `KEY` (a fingerprint SHA256:… or a public key); without it, the signer of the first signed head is trusted on first use"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			opts := remoteAddOptions{meta: c.String("meta"), blobs: c.String("blobs"), trust: c.String("trust"), json: c.Bool("json")}
			if c.NArg() != 1 || opts.meta == "" || opts.blobs == "" {
				return usagef("usage: opm remote add NAME --meta URL --blobs URL")
			}
			return runRemoteAdd(globals(c), opts, c.Args().First())
		},
	}
}

type remoteAddOptions struct {
	meta  string // git URL or local path of the metadata
	blobs string // bucket URL of the blobs
	trust string // the key the remote's commits are verified from
	json  bool   // print the remote as opm remote ls --json does
}

// runRemoteAdd adds the remote name.
func runRemoteAdd(g globalOptions, opts remoteAddOptions, name string) error {
	return withHome(g, func(r *registry.Registry) error {
		meta := opts.meta
		if registry.IsLocalPath(meta) {
			meta = absPath(g, meta)
		}
		rm := registry.Remote{Name: name, URL: meta, Blobs: opts.blobs, Trust: opts.trust}
		if err := r.AddRemote(g.ctx, rm); err != nil || !opts.json {
			return err
		}
		rm, err := r.Remote(name)
		if err != nil {
			return err
		}
		return printJSON(g, rm)
	})
}
