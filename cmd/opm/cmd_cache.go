package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "inspect and trim the local blob store: quota, pins, eviction",
		Description: `The local store (<home>/blobs) keeps the blobs this machine has read,
pushed or prefetched. It is kept under a quota, git config cache.quota of the
home: a size (20GiB, 500MB, 1073741824) or a percentage of the filesystem
holding the home (10%). Unset, it is 10% of that filesystem, at least 1 GiB.

Over the quota, the least recently used blobs are evicted down to 90% of it:
by the daemon (checked every 30 s and as fetches grow the store), at the end
of opm pull and opm sync --prefetch, and by opm cache prune. Never evicted:
blobs of tags a pin chooses, blobs open in the mount, blobs the
bucket does not hold, and nothing at all in a home with no bucket (the local
store is then the only copy). An evicted blob is fetched again from the
bucket when next read.

Pins are selectors, NS[/PROJECT[/REPO]][:TAG] with globs (the grammar of
opm ls and opm sync --include): acme/web/site:v1.2.0,
acme/web/site:v1.*, acme/web/site (every tag), acme/* or acme (everything of
acme). They are kept in cache.pin and apply to tags pushed later too; pin
also fetches the matching blobs now.

Example:
   opm config cache.quota 20GiB
   opm cache stats
   opm cache ls --json
   opm cache pin 'acme/web/site:v1.*'
   opm cache pin                      # list the pins
   opm cache unpin 'acme/web/site:v1.*'
   opm cache prune --dry-run
   opm cache prune --all              # evict everything that may be`,
		Subcommands: []*cli.Command{
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list the local blobs, least recently used first",
				Description: `Columns: digest, size, last access (the index's, or the file's time
marked '~' for a blob the index does not know), flags (P pinned, O open in
the mount) and the tags of the head that name the blob.

Example:
   opm cache ls
   opm cache ls --json | jq '.[] | select(.pinned)'`,
				Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0); err != nil {
						return err
					}
					return withHome(c, func(r *registry.Registry) error {
						blobs, err := r.CachedBlobs(c.Context)
						if err != nil {
							return err
						}
						if c.Bool("json") {
							if blobs == nil {
								blobs = []registry.CachedBlob{}
							}
							return printJSON(c, blobs)
						}
						tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "DIGEST\tSIZE\tLAST ACCESS\tFLAGS\tTAGS")
						for _, b := range blobs {
							when := b.LastAccess.Local().Format(time.DateTime)
							if !b.Indexed {
								when = "~" + when
							}
							flags := ""
							if b.Pinned {
								flags += "P"
							}
							if b.InUse {
								flags += "O"
							}
							if flags == "" {
								flags = "-"
							}
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Digest, opm.HumanSize(b.Size), when, flags, strings.Join(b.Tags, " "))
						}
						return tw.Flush()
					})
				},
			},
			{
				Name:  "stats",
				Usage: "sum up the local store: size, quota, pins, whether eviction is possible",
				Description: `Example:
   opm cache stats
   opm cache stats --json`,
				Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0); err != nil {
						return err
					}
					return withHome(c, func(r *registry.Registry) error {
						st, err := r.CacheStats(c.Context)
						if err != nil {
							return err
						}
						if c.Bool("json") {
							return printJSON(c, st)
						}
						w := c.App.Writer
						pct := 0.0
						if st.Quota.Bytes > 0 {
							pct = 100 * float64(st.Bytes) / float64(st.Quota.Bytes)
						}
						fmt.Fprintf(w, "blobs:     %d, %s (%.0f%% of the quota)\n", st.Blobs, opm.HumanSize(st.Bytes), pct)
						fmt.Fprintf(w, "quota:     %s (%s); evicts down to %s\n", opm.HumanSize(st.Quota.Bytes), st.Quota.Setting, opm.HumanSize(st.Quota.LowWater))
						fmt.Fprintf(w, "pinned:    %d blobs, %s; patterns: %s\n", st.PinnedBlobs, opm.HumanSize(st.PinnedBytes), orNone(strings.Join(st.Pins, " ")))
						fmt.Fprintf(w, "open:      %d blobs in the mount\n", st.InUseBlobs)
						if st.Evictable {
							fmt.Fprintf(w, "eviction:  least recently used first, blobs are fetched again from %s\n", st.Bucket)
						} else {
							fmt.Fprintf(w, "eviction:  never (only copy): %s\n", st.Reason)
						}
						return nil
					})
				},
			},
			{
				Name:      "pin",
				Usage:     "keep the blobs of the tags SELECTOR chooses local (none: list the pins)",
				ArgsUsage: "[SELECTOR]",
				Description: `SELECTOR is NS[/PROJECT[/REPO]][:TAG], globs allowed. The selector is kept
(git config cache.pin), so tags that match it later are pinned too, and the
blobs of the tags it matches now are fetched.

Example:
   opm cache pin acme/web/site:v1.2.0
   opm cache pin 'acme/web/site:v1.*'
   opm cache pin 'tools/*'
   opm cache pin`,
				Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 1); err != nil {
						return err
					}
					if c.NArg() == 1 {
						// Refused before any daemon or home is touched.
						if _, err := layout.ParseSelector(c.Args().First()); err != nil {
							return err
						}
					}
					return withHome(c, func(r *registry.Registry) error {
						if c.NArg() == 0 {
							pins, err := r.Pins()
							if err != nil {
								return err
							}
							if c.Bool("json") {
								if pins == nil {
									pins = []string{}
								}
								return printJSON(c, pins)
							}
							for _, p := range pins {
								fmt.Fprintln(c.App.Writer, p)
							}
							return nil
						}
						res, err := r.Pin(c.Context, c.Args().First(), newProgress(c, "fetch"))
						if res != nil && c.Bool("json") {
							return printJSONThen(c, res, err)
						}
						if res != nil {
							w := c.App.ErrWriter
							state := "pinned"
							if !res.Added {
								state = "already pinned"
							}
							if len(res.Tags) == 0 {
								fmt.Fprintf(w, "%s %s; it matches no tag yet (tags pushed later that match are pinned)\n", state, res.Pattern)
							} else {
								fmt.Fprintf(w, "%s %s: %d tag(s), %d blob(s), %s; fetched %d blob(s), %s\n", state, res.Pattern,
									len(res.Tags), res.Blobs, opm.HumanSize(res.Bytes), res.Fetched, opm.HumanSize(res.FetchedBytes))
							}
						}
						return err
					})
				},
			},
			{
				Name:      "unpin",
				Usage:     "remove a pin (its blobs become evictable)",
				ArgsUsage: "SELECTOR",
				Description: `SELECTOR is removed exactly as it was pinned (opm cache pin lists them).

Example:
   opm cache unpin 'acme/web/site:v1.*'`,
				Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, 1); err != nil {
						return err
					}
					p := c.Args().First()
					if _, err := layout.ParseSelector(p); err != nil {
						return err
					}
					return withHome(c, func(r *registry.Registry) error {
						if err := r.Unpin(p); err != nil {
							return err
						}
						if c.Bool("json") {
							return printJSON(c, map[string]any{"pattern": p, "removed": true})
						}
						fmt.Fprintf(c.App.ErrWriter, "unpinned %s\n", p)
						return nil
					})
				},
			},
			{
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
					return withHome(c, func(r *registry.Registry) error {
						start := time.Now()
						res, err := r.Prune(c.Context, registry.PruneOptions{DryRun: c.Bool("dry-run"), All: c.Bool("all")})
						if res == nil {
							return err
						}
						if c.Bool("json") {
							return printJSONThen(c, res, err)
						}
						verb := "evict"
						if res.DryRun {
							verb = "would evict"
						}
						for _, b := range res.Evicted {
							fmt.Fprintf(c.App.Writer, "%s %s %d\n", verb, b.Digest, b.Size)
						}
						printPrune(c, res, time.Since(start))
						return err
					})
				},
			},
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// printPrune writes the summary line(s) of an eviction to stderr.
func printPrune(c *cli.Context, res *registry.PruneResult, took time.Duration) {
	w := c.App.ErrWriter
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
func autoPrune(c *cli.Context, r *registry.Registry, used []digest.Digest) {
	w := c.App.ErrWriter
	if runningInDaemon(c.Context) == nil {
		if err := r.NoteAccess(used); err != nil && !errors.Is(err, opm.ErrLocked) {
			fmt.Fprintf(w, "opm: warning: cache: %s\n", oneLine(err))
		}
	}
	start := time.Now()
	res, err := r.AutoPrune(c.Context)
	switch {
	case errors.Is(err, opm.ErrLocked):
		return // another process holds the index; a later command prunes
	case err != nil:
		fmt.Fprintf(w, "opm: warning: cache: %s\n", oneLine(err))
	case res != nil && (res.Reason != "" || len(res.Evicted) > 0):
		printPrune(c, res, time.Since(start))
	}
}
