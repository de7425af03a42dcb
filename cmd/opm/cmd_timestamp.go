package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
)

func timestampCommand() *cli.Command {
	return &cli.Command{
		Name:  "timestamp",
		Usage: "promise that the registry's metadata is current until a time",
		Description: `Commits .timestamp at the top of the metadata: the registry is current until
now plus --expires (default 7 days). Signed like every commit and published
to origin. A reader whose origin's last verified state holds an expired
timestamp is stale: opm sync exits 11 (after taking what it could), opm
status and <mnt>/.opm/status say so. A frozen origin (serving an old, validly
signed state) or an unreachable one is thereby noticed at a known time: the
analogue of CernVM-FS's whitelist expiry. Run it from CI more often than it
expires (e.g. daily with --expires 72h).

Example:
   opm timestamp
   opm timestamp --expires 72h --json`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "expires", Value: registry.DefaultTimestampLife, Usage: "the metadata is current for `DURATION` from now (e.g. 72h)"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			g := globals(c)
			return withHome(g, func(r *registry.Registry) error {
				res, err := r.Timestamp(g.ctx, c.Duration("expires"))
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(g, res)
				}
				fmt.Fprintf(g.stderr, "current until %s (commit %s)\n", res.Expires.Local().Format(time.DateTime), shortHash(res.Commit))
				return nil
			})
		},
	}
}
