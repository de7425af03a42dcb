package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
	opmsync "github.com/openpm/opm/sync"
)

func syncCommand() *cli.Command {
	return &cli.Command{
		Name:      "sync",
		Usage:     "follow origin, or mirror one remote into another",
		ArgsUsage: "[SRC DST] | --prefetch [SELECTOR]",
		Description: `With no argument: fetch origin's metadata and fast-forward this home's main
to it. Blobs stay where they are and are fetched from origin's bucket when
first read; --prefetch downloads now the blobs of the tags SELECTOR chooses
(NS[/PROJECT[/REPO]][:TAG], globs allowed, the grammar of opm cache pin and
opm ls; none means every tag). A home whose main has commits origin
lacks and that origin has moved past is refused unless --force (which takes
origin's main).

With SRC and DST (names of remotes of this home): mirror SRC into DST. The
blobs DST lacks — found from the commits, never by listing a bucket — are
copied first, in parallel, each verified; then DST's main is fast-forwarded to
SRC's (same commits). --include/--exclude select tags (selectors as above):
the mirror is then filtered and DST gets new commits carrying
Opm-Synced-From: <SRC>@<commit>. A tag whose blob fails verification at SRC
is left out (a preserving mirror then publishes nothing). A DST with commits
SRC lacks is refused unless --force. A sync interrupted at any point leaves DST
consistent; the next one copies only what is still missing.

Example:
   opm sync
   opm sync --prefetch acme/web
   opm sync origin backup --json
   opm sync origin edge --include 'acme/*/*:v*' --dry-run`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "prefetch", Usage: "also download the blobs of the tags SELECTOR chooses (all without one)"},
			&cli.StringSliceFlag{Name: "include", Usage: "mirror only tags `SELECTOR` chooses (repeatable)"},
			&cli.StringSliceFlag{Name: "exclude", Usage: "do not mirror tags `SELECTOR` chooses (repeatable)"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what would be copied and change nothing"},
			&cli.BoolFlag{Name: "force", Usage: "take the source's main over a diverged destination"},
			&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Usage: "copy `N` blobs at once (default: git config transfer.jobs, else 16)"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			opts := syncOptions{
				prefetch: c.Bool("prefetch"), include: c.StringSlice("include"), exclude: c.StringSlice("exclude"),
				dryRun: c.Bool("dry-run"), force: c.Bool("force"), jobs: c.Int("jobs"), json: c.Bool("json"),
			}
			if opts.prefetch {
				if err := needArgs(c, 0, 1); err != nil {
					return err
				}
			} else if c.NArg() != 0 && c.NArg() != 2 {
				return usagef("sync takes no argument (follow origin) or SRC DST (mirror), got %d; usage: opm sync %s", c.NArg(), c.Command.ArgsUsage)
			}
			return runSync(globals(c), opts, c.Args().Slice()...)
		},
	}
}

type syncOptions struct {
	prefetch         bool
	include, exclude []string // selectors
	dryRun           bool
	force            bool
	jobs             int
	json             bool
}

// runSync mirrors remote SRC into DST (args SRC DST), or follows origin
// (args none, or the SELECTOR of --prefetch).
func runSync(g globalOptions, opts syncOptions, args ...string) error {
	if len(args) == 2 && !opts.prefetch {
		return withHome(g, func(r *registry.Registry) error { return syncMirror(g, opts, r, args[0], args[1]) })
	}
	if len(opts.include)+len(opts.exclude) > 0 || opts.dryRun {
		return usagef("--include, --exclude and --dry-run apply to opm sync SRC DST")
	}
	var filter layout.Filter
	if len(args) == 1 {
		var err error
		if filter, err = layout.ParseFilter(args[:1], nil); err != nil {
			return err
		}
	}
	return withHome(g, func(r *registry.Registry) error { return syncOrigin(g, opts, r, filter) })
}

// syncOrigin fast-forwards this home's main to origin's, and with
// --prefetch downloads the blobs of the tags filter chooses.
func syncOrigin(g globalOptions, opts syncOptions, r *registry.Registry, filter layout.Filter) (err error) {
	res, err := r.SyncOrigin(g.ctx, opts.force, opts.prefetch, filter, newProgress(g, opts.json, "prefetch"))
	if res == nil {
		return err
	}
	if opts.prefetch {
		defer autoPrune(g, r, nil)
	}
	if opts.json {
		return printJSONThen(g, res, err)
	}
	defer func() {
		if res.FreshUntil != nil && err == nil {
			fmt.Fprintf(g.stderr, "%s's metadata is current until %s\n", res.Remote, res.FreshUntil.Local().Format(time.DateTime))
		}
	}()
	if t := res.Trust; t != nil && t.FirstUse {
		fmt.Fprintf(g.stderr, "%s signs its metadata: trusting %s (%s) on first use; check this fingerprint with its publisher, or pin another with opm remote trust %s KEY\n", res.Remote, t.Pin, t.Principal, res.Remote)
	}
	switch {
	case res.Before == res.After:
		fmt.Fprintf(g.stderr, "up to date with %s at %s\n", res.Remote, shortHash(res.After))
	default:
		fmt.Fprintf(g.stderr, "%s..%s: %d commit(s) from %s\n", shortHash(res.Before), shortHash(res.After), res.Commits, res.Remote)
	}
	if res.Ahead > 0 {
		fmt.Fprintf(g.stderr, "%d local commit(s) not yet on %s (the next push, tag or rm publishes them)\n", res.Ahead, res.Remote)
	}
	switch {
	case opts.prefetch && len(res.Tags) == 0 && len(filter.Include) == 1:
		sel := filter.Include[0]
		fmt.Fprintf(g.stderr, "no tag matches %s: nothing prefetched (opm ls '%s' lists what a selector names)\n", sel, sel)
	case opts.prefetch:
		fmt.Fprintf(g.stderr, "prefetched %d blob(s), %s of %d tag(s)\n", res.Prefetched, opm.HumanSize(res.Bytes), len(res.Tags))
	}
	return err
}

// syncMirror mirrors remote src into remote dst.
func syncMirror(g globalOptions, opts syncOptions, r *registry.Registry, src, dst string) error {
	start := time.Now()
	res, err := opmsync.Mirror(g.ctx, r, src, dst, opmsync.Options{
		Include:  opts.include,
		Exclude:  opts.exclude,
		DryRun:   opts.dryRun,
		Force:    opts.force,
		Jobs:     opts.jobs,
		Progress: newProgress(g, opts.json, "sync"),
	})
	switch {
	case res == nil:
		return err
	case opts.json:
		return printJSONThen(g, res, err)
	case res.DryRun:
		printMirrorPlan(g, res)
		return err
	case err != nil && res.Copied == 0 && len(res.Tags) == 0:
		return err // nothing happened: the error says it all
	case err == nil && res.Mode == "up-to-date":
		fmt.Fprintf(g.stderr, "%s is up to date with %s at %s\n", res.Dst, res.Src, shortHash(res.SrcCommit))
		return nil
	}
	fmt.Fprintf(g.stderr, "%s -> %s (%s): %d tag(s), %d blob(s) copied (%s), %d already there, %s..%s in %s\n",
		res.Src, res.Dst, res.Mode, len(res.Tags), res.Copied, opm.HumanSize(res.Bytes), res.Present,
		shortHash(res.DstBefore), shortHash(res.DstAfter), time.Since(start).Round(time.Millisecond))
	return err
}

// printMirrorPlan prints what a dry run of a mirror would do.
func printMirrorPlan(g globalOptions, res *opmsync.Result) {
	for _, b := range res.Missing {
		fmt.Fprintf(g.stdout, "copy %s %d %v\n", b.Digest, b.Size, b.Tags)
	}
	for _, t := range res.Tags {
		fmt.Fprintf(g.stdout, "tag %s\n", t)
	}
	for _, t := range res.Removed {
		fmt.Fprintf(g.stdout, "remove %s\n", t)
	}
	fmt.Fprintf(g.stderr, "dry run: %s -> %s (%s): %d tag(s), %d of %d blob(s) to copy\n", res.Src, res.Dst, res.Mode, len(res.Tags), len(res.Missing), res.Blobs)
}

// followOrigin runs SyncOrigin every interval until the returned stop is
// called: the daemon of `opm mount --sync-interval` follows origin, and the
// mount shows each new head. A failed round is logged and retried at the
// next. A round starts an interval after the last one ended, not on a
// ticker: a round longer than the interval (a hostile origin's pack,
// fetched and refused each time) would otherwise follow the last at once
// and hold the fetch lock from every other sync.
func followOrigin(ctx context.Context, r *registry.Registry, every time.Duration, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			res, err := r.SyncOrigin(ctx, false, false, layout.Filter{}, nil)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Warn("sync with origin failed", "err", err)
			case res.Before != res.After:
				log.Info("synced with origin", "from", shortHash(res.Before), "to", shortHash(res.After), "commits", res.Commits)
			}
			t.Reset(every)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}
