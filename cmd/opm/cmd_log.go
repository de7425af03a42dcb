package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
)

func logCommand() *cli.Command {
	return &cli.Command{
		Name:      "log",
		Usage:     "show the history of the registry, a prefix, or one tag",
		ArgsUsage: "[REF|NS[/PROJECT[/REPO]]]",
		Description: `Every change is a git commit; this reads them: commit, date, author, action,
digest and previous digest. 'git -C <home>/meta.git log' tells the same story.

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
			return withHome(c, func(r *registry.Registry) error {
				entries, err := r.Log(c.Context, c.Args().First(), c.Int("max-count"))
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if entries == nil {
						entries = []registry.LogEntry{}
					}
					return printJSON(c, entries)
				}
				w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				for _, e := range entries {
					prev := ""
					if e.Previous != "" {
						prev = "was " + short(string(e.Previous))
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Commit[:12], e.Date.Local().Format(time.DateTime),
						e.Author, e.Action, short(string(e.Digest)), prev)
				}
				return w.Flush()
			})
		},
	}
}

// short abbreviates a digest for tables: sha256:0123456789ab.
func short(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
