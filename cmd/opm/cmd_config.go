package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:      "config",
		Usage:     "read or set a setting of the home (git config of meta.git)",
		ArgsUsage: "KEY [VALUE]",
		Description: `Settings are git configuration of <home>/meta.git, so
'git config -f <home>/meta.git/config KEY VALUE' does the same.

Keys:
   opm.blobs     bucket URL holding the registry's blobs: file://, s3://, gs://,
                 azblob:// or mem:// (docs/storage.md)
   user.name     author of the commits this home makes
   user.email
   cache.quota   size limit of the local blob store: 20GiB, 500MB, bytes, or 10% (see opm cache)
   cache.pin     a pinned tag pattern (one line each; use opm cache pin/unpin)
   signing-key   an SSH key that signs every commit this home writes: the path of
                 a private key, or of a public key whose private key is in ssh-agent
                 (sets git's user.signingkey and gpg.format=ssh; git verify-commit
                 checks the signatures with gpg.ssh.allowedSignersFile)

Example:
   opm config opm.blobs 's3://bucket?region=eu-west-1'
   opm config opm.blobs
   opm config --unset opm.blobs`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "unset", Usage: "remove the key"}, jsonFlag},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 2); err != nil {
				return err
			}
			return runConfig(globals(c), configOptions{unset: c.Bool("unset"), json: c.Bool("json")}, c.Args().First(), c.Args().Tail()...)
		},
	}
}

type configOptions struct {
	unset bool
	json  bool // print {"key", "value"} (value "" once unset)
}

// runConfig removes key (--unset), sets it to value, or prints it.
func runConfig(g globalOptions, opts configOptions, key string, value ...string) error {
	return withHome(g, func(r *registry.Registry) error {
		var v string
		var err error
		switch {
		case opts.unset:
			err = r.SetConfig(g.ctx, key, "")
		case len(value) == 1:
			v = value[0]
			if strings.EqualFold(key, registry.SigningKeyKey) && !strings.HasPrefix(v, "key::") {
				v = absPath(g, v) // commits are signed from any directory
			}
			err = r.SetConfig(g.ctx, key, v)
		default:
			if v, err = r.Config(key); err == nil && v == "" {
				err = opm.Errorf(opm.ErrNotFound, "%s is not set", key)
			}
			if err == nil && !opts.json {
				fmt.Fprintln(g.stdout, v)
			}
		}
		if err != nil || !opts.json {
			return err
		}
		return printJSON(g, map[string]string{"key": key, "value": v})
	})
}
