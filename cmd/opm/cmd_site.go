package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
	"github.com/openpm/opm/server"
)

func siteCommand() *cli.Command {
	return &cli.Command{
		Name:      "site",
		Usage:     "write the registry's web pages and JSON listing as a static site",
		ArgsUsage: "DIR",
		Description: `Writes the pages 'opm serve' shows at / (namespaces, projects,
repositories, tags with their files and history) and the OPM listing API as
JSON files under DIR/_opm/api/, for any static host. There is no search box:
that needs the server. File links go to /v2/… of an 'opm serve' on the same
host, or with --blob-url to a public bucket (<URL>/blobs/sha256/<hex>).

DIR ends up exact: files are written only when they change (each by a
rename), pages of deleted tags and repositories are removed, and a second run
over an unchanged registry writes nothing, so a sync to the static host moves
only what changed. Files of DIR that opm site did not write are left alone
(DIR/_opm/site-files lists those it did).

Example:
   opm site public/ --blob-url https://blobs.example.com`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "blob-url", Usage: "public `URL` of the bucket for file links"},
			&cli.StringFlag{Name: "title", Value: "registry", Usage: "`TEXT` at the top of the pages"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			opts := siteOptions{blobURL: c.String("blob-url"), title: c.String("title"), json: c.Bool("json")}
			return runSite(globals(c), opts, c.Args().First())
		},
	}
}

type siteOptions struct {
	blobURL string
	title   string
	json    bool
}

// runSite writes the static site into dir.
func runSite(g globalOptions, opts siteOptions, dir string) error {
	dir = absPath(g, dir)
	return withHome(g, func(r *registry.Registry) error {
		res, err := server.WriteSite(g.ctx, r, dir, server.SiteOptions{Title: opts.title, BlobURL: opts.blobURL})
		if err != nil {
			return err
		}
		if opts.json {
			return printJSON(g, res)
		}
		fmt.Fprintf(g.stdout, "%s: %d pages and %d JSON files of commit %s; %d written, %d removed\n", res.Dir, res.Pages, res.JSON, res.Commit[:min(12, len(res.Commit))], res.Written, res.Removed)
		return nil
	})
}
