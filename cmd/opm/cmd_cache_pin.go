package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

func cachePinCommand() *cli.Command {
	return &cli.Command{
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
			return runCachePin(globals(c), cachePinOptions{json: c.Bool("json")}, c.Args().Slice()...)
		},
	}
}

type cachePinOptions struct {
	json bool
}

// runCachePin pins selector, the one argument, or lists the pins when
// there is none.
func runCachePin(g globalOptions, opts cachePinOptions, selector ...string) error {
	if len(selector) == 0 {
		return withHome(g, func(r *registry.Registry) error { return listPins(g, opts, r) })
	}
	// Refused before any daemon or home is touched.
	if _, err := layout.ParseSelector(selector[0]); err != nil {
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.Pin(g.ctx, selector[0], newProgress(g, opts.json, "fetch"))
		switch {
		case res == nil:
			return err
		case opts.json:
			return printJSONThen(g, res, err)
		}
		printPin(g, res)
		return err
	})
}

func listPins(g globalOptions, opts cachePinOptions, r *registry.Registry) error {
	pins, err := r.Pins()
	if err != nil {
		return err
	}
	if opts.json {
		return printJSON(g, nonNil(pins))
	}
	for _, p := range pins {
		fmt.Fprintln(g.stdout, p)
	}
	return nil
}

// printPin writes the summary of a pin to stderr.
func printPin(g globalOptions, res *registry.PinResult) {
	state := "pinned"
	if !res.Added {
		state = "already pinned"
	}
	if len(res.Tags) == 0 {
		fmt.Fprintf(g.stderr, "%s %s; it matches no tag yet (tags pushed later that match are pinned)\n", state, res.Pattern)
		return
	}
	fmt.Fprintf(g.stderr, "%s %s: %d tag(s), %d blob(s), %s; fetched %d blob(s), %s\n", state, res.Pattern,
		len(res.Tags), res.Blobs, opm.HumanSize(res.Bytes), res.Fetched, opm.HumanSize(res.FetchedBytes))
}
