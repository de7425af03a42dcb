package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

func cacheUnpinCommand() *cli.Command {
	return &cli.Command{
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
			return runCacheUnpin(globals(c), cacheUnpinOptions{json: c.Bool("json")}, c.Args().First())
		},
	}
}

type cacheUnpinOptions struct {
	json bool
}

// runCacheUnpin removes the pin selector.
func runCacheUnpin(g globalOptions, opts cacheUnpinOptions, selector string) error {
	if _, err := layout.ParseSelector(selector); err != nil {
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		if err := r.Unpin(selector); err != nil {
			return err
		}
		if opts.json {
			return printJSON(g, map[string]any{"pattern": selector, "removed": true})
		}
		fmt.Fprintf(g.stderr, "unpinned %s\n", selector)
		return nil
	})
}
