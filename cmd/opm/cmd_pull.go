package main

import (
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "write a package's files into a directory",
		ArgsUsage: "NS/PROJECT/REPO:TAG|NS/PROJECT/REPO@sha256:HEX",
		Description: `Files are written with their modes under DIR, never outside it. Each one is
verified against its digest before it gets its final name. An existing file
is an error unless --force.

Example:
   opm pull acme/web/site:v1.2.0 -o ./site
   opm pull acme/web/site@sha256:3c1f…  -o ./site --force`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: ".", Usage: "write into `DIR`"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite existing files"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			opts := pullOptions{output: c.String("output"), force: c.Bool("force"), json: c.Bool("json")}
			return runPull(globals(c), opts, c.Args().First())
		},
	}
}

type pullOptions struct {
	output string // the directory written into
	force  bool
	json   bool
}

// runPull writes the files of the package ref names into opts.output.
func runPull(g globalOptions, opts pullOptions, ref string) error {
	pkg, err := opm.ParseReference(ref)
	if err != nil {
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.Pull(g.ctx, pkg, absPath(g, opts.output), opts.force, newProgress(g, opts.json, "pull"))
		if err != nil {
			return err
		}
		var used []digest.Digest
		if runningInDaemon(g.ctx) == nil { // the daemon's index noted each read itself
			used = pulledBlobs(r, pkg, res)
		}
		defer autoPrune(g, r, used)
		if opts.json {
			return printJSON(g, res)
		}
		fmt.Fprintf(g.stderr, "%s: %d files, %s into %s\n", pkg, res.Files, opm.HumanSize(res.Size), res.Dir)
		return nil
	})
}

// pulledBlobs are the blobs a pull read, for the cache's LRU order. It
// resolves ref as the pull did (by digest, a tag pull would read every tag
// of the repository to find it) and gives nothing if the tag moved since.
func pulledBlobs(r *registry.Registry, ref opm.Reference, res *registry.PullResult) []digest.Digest {
	p, err := r.Resolve(ref)
	if err != nil || p.Digest.String() != res.Digest {
		return nil
	}
	var out []digest.Digest
	for _, f := range p.Manifest.Files() {
		if f.Symlink == "" {
			out = append(out, f.Digest)
		}
	}
	return out
}
