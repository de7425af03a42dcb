package main

import (
	"fmt"
	"text/tabwriter"
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
			return withHome(c, func(r *registry.Registry) error {
				l, err := r.List(c.Context, c.Args().First(), c.Bool("tags"))
				if err == nil {
					err = l.SortTags(c.String("sort"))
				}
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c, l)
				}
				if l.Kind != "tags" {
					for _, n := range l.Names {
						fmt.Fprintln(c.App.Writer, n)
					}
					return nil
				}
				w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				for _, t := range l.Tags {
					name := t.Tag
					if t.Ref != "" { // a selector's tags, of many repositories
						name = t.Ref
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d files\t%s\n", name, t.Digest, humanBytes(t.Size), t.Files, t.Date.Local().Format(time.DateTime))
				}
				return w.Flush()
			})
		},
	}
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print a package's manifest, byte for byte",
		ArgsUsage: "REF",
		Description: `The manifest is an OCI image manifest; its sha256 is the package digest.

Example:
   opm inspect acme/web/site:v1.2.0 | jq .layers[].annotations`,
		Action: func(c *cli.Context) error {
			p, err := resolveArg(c)
			if err != nil {
				return err
			}
			_, err = c.App.Writer.Write(p.Bytes)
			return err
		},
	}
}

func filesCommand() *cli.Command {
	return &cli.Command{
		Name:      "files",
		Usage:     "list a package's files: path, mode, size, digest, modification time",
		ArgsUsage: "REF",
		Description: `Example:
   opm files acme/web/site:v1.2.0
   opm files acme/web/site@sha256:3c1f… --json`,
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			p, err := resolveArg(c)
			if err != nil {
				return err
			}
			files := p.Manifest.Files()
			if c.Bool("json") {
				type fileJSON struct {
					Path    string     `json:"path"`
					Mode    string     `json:"mode"`
					Size    int64      `json:"size"`
					Digest  string     `json:"digest"`
					Symlink string     `json:"symlink,omitempty"`
					MTime   *time.Time `json:"mtime,omitempty"`
				}
				out := make([]fileJSON, len(files))
				for i, f := range files {
					out[i] = fileJSON{Path: f.Path, Mode: opm.FormatMode(f.Mode), Size: f.Size, Digest: f.Digest.String(), Symlink: f.Symlink}
					if !f.ModTime.IsZero() {
						out[i].MTime = &files[i].ModTime
					}
				}
				return printJSON(c, out)
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			for _, f := range files {
				name := f.Path
				if f.Symlink != "" {
					name += " -> " + f.Symlink
				}
				when := "-" // none recorded: readers show the tag's time
				if !f.ModTime.IsZero() {
					when = f.ModTime.Local().Format("2006-01-02 15:04:05.000000000")
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", name, opm.FormatMode(f.Mode), f.Size, f.Digest, when)
			}
			return w.Flush()
		},
	}
}

// resolveArg resolves the command's one REF argument.
func resolveArg(c *cli.Context) (*registry.Package, error) {
	if err := needArgs(c, 1, 1); err != nil {
		return nil, err
	}
	ref, err := opm.ParseReference(c.Args().First())
	if err != nil {
		return nil, err
	}
	var p *registry.Package
	err = withHome(c, func(r *registry.Registry) error {
		p, err = r.Resolve(ref)
		return err
	})
	return p, err
}

func humanBytes(n int64) string { return opm.HumanSize(n) }
