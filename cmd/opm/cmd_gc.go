package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:      "gc",
		Usage:     "remove blobs that no tag names any more, giving space back",
		ArgsUsage: "[--dry-run] [--grace DURATION] [--keep DURATION] [--remote NAME]",
		Description: `Removes from the registry's store — its bucket, or the local store of a home
without one — every blob that no manifest names: not at the head of this
home's metadata, not at the head of any remote whose bucket it is (fetched
now), and not in a version that a commit of the last --keep period replaced
or removed (so recent history still pulls). A blob written within --grace is
never removed: a push may be about to name it. Local copies of removed blobs
go too. Prints each blob removed and the bytes freed.

GC refuses to remove anything while a manifest does not parse (what it names
is unknown; see opm fsck) or a remote sharing the bucket cannot be fetched.
Durations take s, m, h and d (days).

Example:
   opm rm acme/web/site:v1.0.0-rc1
   opm gc --dry-run
   opm gc --keep 0 --grace 10m
   opm gc --remote origin --json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what would be removed and remove nothing"},
			&cli.StringFlag{Name: "grace", Value: "1h", Usage: "never remove a blob written less than `DURATION` ago"},
			&cli.StringFlag{Name: "keep", Value: "7d", Usage: "keep what commits of the last `DURATION` replaced or removed"},
			&cli.StringFlag{Name: "remote", Usage: "collect remote `NAME`'s bucket instead of this home's store"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			opts := gcOptions{
				dryRun: c.Bool("dry-run"), grace: c.String("grace"), keep: c.String("keep"),
				remote: c.String("remote"), json: c.Bool("json"),
			}
			return runGC(globals(c), opts)
		},
	}
}

type gcOptions struct {
	dryRun bool
	grace  string // a duration, as given (parseDays)
	keep   string // a duration, as given (parseDays)
	remote string // "": this home's store
	json   bool
}

// runGC removes the blobs of the store that nothing names.
func runGC(g globalOptions, opts gcOptions) error {
	grace, err := parseDays("--grace", opts.grace)
	if err != nil {
		return err
	}
	keep, err := parseDays("--keep", opts.keep)
	if err != nil {
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.GC(g.ctx, registry.GCOptions{
			Remote:   opts.remote,
			DryRun:   opts.dryRun,
			Grace:    grace,
			Keep:     keep,
			Progress: newProgress(g, opts.json, "gc"),
		})
		switch {
		case res == nil:
			return err
		case opts.json:
			return printJSONThen(g, res, err)
		}
		printGC(g, res, grace)
		return err
	})
}

// printGC prints the blobs a gc removed and its summary.
func printGC(g globalOptions, res *registry.GCResult, grace time.Duration) {
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	for _, b := range res.Removed {
		fmt.Fprintf(g.stdout, "%s %s %s (written %s)\n", verb, b.Digest, opm.HumanSize(b.Size), b.Written.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(g.stderr, "gc of %s: %s %d blob(s), %s; %d of %d blob(s) named", res.Store, verb, len(res.Removed), opm.HumanSize(res.BytesFreed), res.Scanned-len(res.Removed)-res.Young, res.Scanned)
	if res.Young > 0 {
		fmt.Fprintf(g.stderr, ", %d unnamed kept (written within --grace %s)", res.Young, grace)
	}
	fmt.Fprintln(g.stderr)
}

// parseDays parses a duration that may also be given in days ("7d").
func parseDays(flag, s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n float64
		if n, err = strconv.ParseFloat(days, 64); err == nil {
			d = time.Duration(n * float64(24*time.Hour))
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		return 0, usagef("%s %q: want a duration such as 30m, 12h or 7d", flag, s)
	}
	return d, nil
}
