package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func logCommand() *cli.Command {
	return &cli.Command{
		Name:      "log",
		Usage:     "show the history of the registry, a prefix, or one tag",
		ArgsUsage: "[REF|NS[/PROJECT[/REPO]]]",
		Description: `Every change is a git commit; this reads them: commit, date, author, action,
digest, previous digest and signature — "signed by PRINCIPAL" when the
registry's allowed signers at its parent allow the key (opm signers),
"REFUSED: why" when they do not (a reader would refuse it), "signed by
SHA256:…, unverified" or nothing in a registry that does not sign.
'git -C <home>/meta.git log --show-signature' tells the same story.

Example:
   opm log acme/web/site:stable
   opm log acme --json -n 20`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "max-count", Aliases: []string{"n"}, Usage: "show at most `N` entries"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 1); err != nil {
				return err
			}
			return runLog(globals(c), logOptions{maxCount: c.Int("max-count"), json: c.Bool("json")}, c.Args().First())
		},
	}
}

type logOptions struct {
	maxCount int // 0: no limit
	json     bool
}

// runLog prints the history of what subject names ("": the registry).
func runLog(g globalOptions, opts logOptions, subject string) error {
	return withHome(g, func(r *registry.Registry) error {
		entries, err := r.Log(g.ctx, subject, opts.maxCount)
		if err != nil {
			return err
		}
		if opts.json {
			return printJSON(g, nonNil(entries))
		}
		w := newTable(g.stdout)
		for _, e := range entries {
			// An author and a subject are anyone's text: an origin's
			// commits reach the terminal escaped.
			prev := ""
			if e.Previous != "" {
				prev = "was " + short(string(e.Previous))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Commit[:12], e.Date.Local().Format(time.DateTime),
				opm.Printable(e.Author), opm.Printable(e.Action), short(string(e.Digest)), prev, signatureMark(e.Signature))
		}
		return w.Flush()
	})
}

// signatureMark is the log's signature column.
func signatureMark(s registry.CommitSignature) string {
	switch s.Status {
	case "verified":
		return "signed by " + opm.Printable(s.Principal)
	case "refused":
		return "REFUSED: " + opm.Printable(s.Reason)
	case "unverified":
		return "signed by " + s.Key + ", unverified"
	}
	return ""
}
