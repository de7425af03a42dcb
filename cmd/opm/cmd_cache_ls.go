package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func cacheLsCommand() *cli.Command {
	return &cli.Command{
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
			return runCacheLs(globals(c), cacheLsOptions{json: c.Bool("json")})
		},
	}
}

type cacheLsOptions struct {
	json bool
}

// runCacheLs lists the blobs of the local store.
func runCacheLs(g globalOptions, opts cacheLsOptions) error {
	return withHome(g, func(r *registry.Registry) error {
		blobs, err := r.CachedBlobs(g.ctx)
		if err != nil {
			return err
		}
		if opts.json {
			return printJSON(g, nonNil(blobs))
		}
		tw := newTable(g.stdout)
		fmt.Fprintln(tw, "DIGEST\tSIZE\tLAST ACCESS\tFLAGS\tTAGS")
		for _, b := range blobs {
			when := b.LastAccess.Local().Format(time.DateTime)
			if !b.Indexed {
				when = "~" + when
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Digest, opm.HumanSize(b.Size), when, cachedFlags(b), strings.Join(b.Tags, " "))
		}
		return tw.Flush()
	})
}

// cachedFlags is the FLAGS column of a blob: P pinned, O open in the mount,
// C some chunks of a big file read chunk by chunk (SIZE is theirs).
func cachedFlags(b registry.CachedBlob) string {
	flags := ""
	if b.Partial {
		flags += "C"
	}
	if b.Pinned {
		flags += "P"
	}
	if b.InUse {
		flags += "O"
	}
	if flags == "" {
		flags = "-"
	}
	return flags
}
