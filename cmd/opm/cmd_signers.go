package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func signersCommand() *cli.Command {
	return &cli.Command{
		Name:  "signers",
		Usage: "list or change who may sign the registry's commits",
		Description: `The registry's allowed signers: the file .allowed_signers at the top of its
metadata, in git's allowed_signers format (ssh-keygen(1)), which readers
verify every new commit against (docs/design.md §3, "Trust"). Each change
is a commit like any other, published to origin, and must itself be signed
by a key the file allowed before it: rotation and revocation are commits.

The first signer turns signing on: configure the key first (opm config
signing-key PATH), then add it. Readers pin a key once (opm remote add
--trust KEY, or on first use at their next sync, printing its fingerprint).

Example:
   opm config signing-key ~/.ssh/ci_ed25519
   opm signers add ci@example.org ~/.ssh/ci_ed25519.pub
   opm signers add release@example.org 'ssh-ed25519 AAAAC3Nza…' --valid-before 2027-12-31
   opm signers rm ci@example.org
   opm signers ls --json`,
		Subcommands: []*cli.Command{
			{
				Name: "ls", Aliases: []string{"list"}, Usage: "list the allowed signers",
				Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0); err != nil {
						return err
					}
					return runSignersLs(globals(c), c.Bool("json"))
				},
			},
			{
				Name: "add", Usage: "allow a key to sign", ArgsUsage: "PRINCIPAL KEY|PUBFILE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "valid-after", Usage: "the key signs from `TIME` on (RFC 3339 or YYYY-MM-DD, UTC)"},
					&cli.StringFlag{Name: "valid-before", Usage: "the key signs until `TIME` (RFC 3339 or YYYY-MM-DD, UTC)"},
					jsonFlag,
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 2, 2); err != nil {
						return err
					}
					return runSignersAdd(globals(c), c.Args().Get(0), c.Args().Get(1), c.String("valid-after"), c.String("valid-before"), c.Bool("json"))
				},
			},
			{
				Name: "rm", Aliases: []string{"remove"}, Usage: "take a key out (revoke it)", ArgsUsage: "PRINCIPAL|FINGERPRINT|KEY",
				Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, 1); err != nil {
						return err
					}
					return runSignersRm(globals(c), c.Args().First(), c.Bool("json"))
				},
			},
		},
	}
}

func runSignersLs(g globalOptions, asJSON bool) error {
	return withHome(g, func(r *registry.Registry) error {
		ss, err := r.Signers()
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(g, nonNil(ss))
		}
		if len(ss) == 0 {
			fmt.Fprintln(g.stderr, "this registry does not sign its commits (opm signers add turns it on)")
			return nil
		}
		tw := newTable(g.stdout)
		for _, s := range ss {
			valid := ""
			if s.ValidAfter != nil {
				valid += "from " + s.ValidAfter.Format(time.RFC3339) + " "
			}
			if s.ValidBefore != nil {
				valid += "until " + s.ValidBefore.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", opm.Printable(strings.Join(s.Principals, ",")), s.Fingerprint, strings.TrimSpace(valid))
		}
		return tw.Flush()
	})
}

func runSignersAdd(g globalOptions, principal, key, after, before string, asJSON bool) error {
	text := key
	if !strings.HasPrefix(key, "ssh-") && !strings.HasPrefix(key, "ecdsa-") && !strings.HasPrefix(key, "sk-") {
		b, err := os.ReadFile(absPath(g, key))
		if err != nil {
			return opm.Errorf(opm.ErrInvalid, "signers add: %s: neither a public key (ssh-ed25519 AAAA…) nor a readable .pub file: %w", key, err)
		}
		text = string(b)
	}
	var va, vb time.Time
	for _, f := range []struct {
		name, v string
		t       *time.Time
	}{{"--valid-after", after, &va}, {"--valid-before", before, &vb}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.v)
		if err != nil {
			if t, err = time.Parse(time.DateOnly, f.v); err != nil {
				return usagef("%s %q: want RFC 3339 (2027-12-31T00:00:00Z) or a date (2027-12-31)", f.name, f.v)
			}
		}
		*f.t = t
	}
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.AddSigner(g.ctx, principal, text, va, vb)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(g, res)
		}
		fmt.Fprintf(g.stderr, "%s may sign: %s (commit %s)\n", principal, res.Fingerprints[0], shortHash(res.Commit))
		return nil
	})
}

func runSignersRm(g globalOptions, id string, asJSON bool) error {
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.RemoveSigner(g.ctx, id)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(g, res)
		}
		fmt.Fprintf(g.stderr, "no longer allowed to sign: %s (commit %s)\n", strings.Join(res.Fingerprints, ", "), shortHash(res.Commit))
		return nil
	})
}
