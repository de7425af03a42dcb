package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func cacheStatsCommand() *cli.Command {
	return &cli.Command{
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
			return runCacheStats(globals(c), cacheStatsOptions{json: c.Bool("json")})
		},
	}
}

type cacheStatsOptions struct {
	json bool
}

// runCacheStats sums up the local store.
func runCacheStats(g globalOptions, opts cacheStatsOptions) error {
	return withHome(g, func(r *registry.Registry) error {
		st, err := r.CacheStats(g.ctx)
		if err != nil {
			return err
		}
		if opts.json {
			return printJSON(g, st)
		}
		w := g.stdout
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
}
