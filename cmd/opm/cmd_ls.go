package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list namespaces, projects, repositories or tags",
		ArgsUsage: "[SELECTOR]",
		Description: `With no argument, the namespaces; with NS, its projects; with NS/PROJECT, its
repositories; with NS/PROJECT/REPO, one line per tag: tag, digest, size, files,
date of the commit that last set it. Tags are in version order: those that
parse as versions (v1.9, v1.10, 2.0.0-rc1: semantic versions, a leading v or
not) by version, then the others in natural order (build-9 before build-10);
--sort name gives plain string order, --sort date the oldest first.

A selector with globs or a :TAG (the grammar of opm cache pin and opm sync
--include: NS[/PROJECT[/REPO]][:TAG]) lists every tag it chooses, one line
each, named ns/project/repo:tag; so does any selector with --tags.

Example:
   opm ls
   opm ls acme/web/site --json
   opm ls 'acme/*/site:v1.*'
   opm ls --tags acme
   opm ls acme/web/site --sort date`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "tags", Aliases: []string{"t"}, Usage: "list every tag the selector chooses, also below a namespace, project or repository"},
			&cli.StringFlag{Name: "sort", Value: registry.SortVersion, Usage: "tag order: version, name or date"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 1); err != nil {
				return err
			}
			return runLs(globals(c), lsOptions{tags: c.Bool("tags"), sort: c.String("sort"), json: c.Bool("json")}, c.Args().First())
		},
	}
}

type lsOptions struct {
	tags bool
	sort string // registry.SortVersion, SortName or SortDate
	json bool
}

// runLs lists what selector names ("": the namespaces).
func runLs(g globalOptions, opts lsOptions, selector string) error {
	return withHome(g, func(r *registry.Registry) error {
		l, err := r.List(g.ctx, selector, opts.tags)
		if err == nil {
			err = l.SortTags(opts.sort)
		}
		if err != nil {
			return err
		}
		if opts.json {
			return printJSON(g, l)
		}
		if l.Kind != "tags" {
			for _, n := range l.Names {
				fmt.Fprintln(g.stdout, n)
			}
			return nil
		}
		w := newTable(g.stdout)
		for _, t := range l.Tags {
			name := t.Tag
			if t.Ref != "" { // a selector's tags, of many repositories
				name = t.Ref
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d files\t%s\n", name, t.Digest, opm.HumanSize(t.Size), t.Files, t.Date.Local().Format(time.DateTime))
		}
		return w.Flush()
	})
}
