package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func cachePruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "evict least recently used blobs now, down to 90% of the quota",
		Description: `Under the quota, prune does nothing (unless --all). Evicted blobs are
listed on stdout; the summary goes to stderr. Pinned blobs, blobs open in
the mount and blobs missing from the bucket are kept; a home with no bucket
evicts nothing.

Example:
   opm cache prune --dry-run
   opm cache prune
   opm cache prune --all --json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what would be evicted and evict nothing"},
			&cli.BoolFlag{Name: "all", Usage: "evict every blob that may be evicted, whatever the quota"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			return runCachePrune(globals(c), cachePruneOptions{dryRun: c.Bool("dry-run"), all: c.Bool("all"), json: c.Bool("json")})
		},
	}
}

type cachePruneOptions struct {
	dryRun bool
	all    bool
	json   bool
}

// runCachePrune evicts blobs of the local store now.
func runCachePrune(g globalOptions, opts cachePruneOptions) error {
	return withHome(g, func(r *registry.Registry) error {
		start := time.Now()
		res, err := r.Prune(g.ctx, registry.PruneOptions{DryRun: opts.dryRun, All: opts.all})
		switch {
		case res == nil:
			return err
		case opts.json:
			return printJSONThen(g, res, err)
		}
		verb := "evict"
		if res.DryRun {
			verb = "would evict"
		}
		for _, b := range res.Evicted {
			fmt.Fprintf(g.stdout, "%s %s %d\n", verb, b.Digest, b.Size)
		}
		printPrune(g, res, time.Since(start))
		return err
	})
}

// printPrune writes the summary line(s) of an eviction to stderr.
func printPrune(g globalOptions, res *registry.PruneResult, took time.Duration) {
	w := g.stderr
	if res.Reason != "" {
		fmt.Fprintf(w, "cache: %s of quota %s; nothing evicted: %s\n", opm.HumanSize(res.Before), opm.HumanSize(res.Quota), res.Reason)
		return
	}
	verb := "evicted"
	if res.DryRun {
		verb = "dry run: would evict"
	}
	fmt.Fprintf(w, "cache: %s %d blob(s), %s freed in %s; %s of quota %s now",
		verb, len(res.Evicted), opm.HumanSize(res.Freed), took.Round(time.Millisecond), opm.HumanSize(res.After), opm.HumanSize(res.Quota))
	var kept []string
	for _, k := range []struct {
		n    int
		what string
	}{{res.KeptPinned, "pinned"}, {res.KeptInUse, "open in the mount"}, {res.KeptRecent, "used just now"}, {res.KeptNotInBucket, "not in the bucket"}} {
		if k.n > 0 {
			kept = append(kept, fmt.Sprintf("%d %s", k.n, k.what))
		}
	}
	if len(kept) > 0 {
		fmt.Fprintf(w, " (kept: %s)", strings.Join(kept, ", "))
	}
	fmt.Fprintln(w)
}

// autoPrune ends a command that fetched blobs: it notes their use in the
// index (when the command ran outside the daemon, whose open index notes
// each access itself) and, if the local store is now over its quota,
// evicts down to the low-water mark. Its failures are warnings: the
// command itself succeeded.
func autoPrune(g globalOptions, r *registry.Registry, used []digest.Digest) {
	w := g.stderr
	if runningInDaemon(g.ctx) == nil {
		if err := r.Touch(used); err != nil && !errors.Is(err, opm.ErrLocked) {
			fmt.Fprintf(w, "opm: warning: cache: %s\n", opm.OneLine(err))
		}
	}
	start := time.Now()
	res, err := r.AutoPrune(g.ctx)
	switch {
	case errors.Is(err, opm.ErrLocked):
		return // another process holds the index; a later command prunes
	case err != nil:
		fmt.Fprintf(w, "opm: warning: cache: %s\n", opm.OneLine(err))
	case res != nil && (res.Reason != "" || len(res.Evicted) > 0):
		printPrune(g, res, time.Since(start))
	}
}
