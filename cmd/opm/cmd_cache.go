package main

import (
	"github.com/urfave/cli/v2"
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
by the daemon (when it starts, within 30 s of the store growing, at once when
it grows by a twentieth of the quota, and every 5 minutes), at the end of
opm pull and opm sync --prefetch, and by opm cache prune. Never evicted:
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
			cacheLsCommand(),
			cacheStatsCommand(),
			cachePinCommand(),
			cacheUnpinCommand(),
			cachePruneCommand(),
		},
	}
}
