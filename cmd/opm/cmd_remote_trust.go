package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
)

func remoteTrustCommand() *cli.Command {
	return &cli.Command{
		Name:      "trust",
		Usage:     "pin the key a remote's signed commits are verified from",
		ArgsUsage: "NAME KEY|FINGERPRINT | NAME --none",
		Description: `Pins KEY (a fingerprint SHA256:…, as ssh-keygen -lf prints it, or a public
key) as this home's root of trust in the remote's metadata, and forgets
what was verified: the next sync verifies from the newest commit KEY signed
while its registry allowed it, and every commit after it. --none unpins:
the signer of the next signed head is trusted on first use.

Example:
   opm remote trust origin SHA256:0sGqA8k1Xm1v7oJ3xQ0nHf5Jx0m0cWb1tB5yY3v4E2c
   opm remote trust origin --none`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "none", Usage: "unpin: trust the next signed head on first use"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			want := 2
			if c.Bool("none") {
				want = 1
			}
			if err := needArgs(c, want, want); err != nil {
				return err
			}
			return withHome(globals(c), func(r *registry.Registry) error {
				g := globals(c)
				rm, err := r.TrustRemote(c.Args().Get(0), c.Args().Get(1))
				switch {
				case err != nil:
					return err
				case c.Bool("json"):
					return printJSON(g, rm)
				case rm.Trust == "":
					fmt.Fprintf(g.stderr, "%s: no key pinned; the next signed head's signer is trusted on first use\n", rm.Name)
				default:
					fmt.Fprintf(g.stderr, "%s: commits are verified from %s at the next sync\n", rm.Name, rm.Trust)
				}
				return nil
			})
		},
	}
}
