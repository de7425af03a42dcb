package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "store files as a package and tag it",
		ArgsUsage: "NS/PROJECT/REPO:TAG PATH...",
		Description: `A directory contributes the files beneath it, with paths relative to it;
a file contributes itself under its base name; .git directories are left out
(with a line saying how many files). Every blob is stored before the tag is
committed, so a tag never names missing content. The same files give
the same digest; pushing a tag that already has that digest makes no commit.

The manifest carries no creation time unless one is given (as
--annotation org.opencontainers.image.created=… or via $SOURCE_DATE_EPOCH),
so that a package's digest depends only on its files.

Example:
   opm push acme/web/site:v1.2.0 ./dist
   opm push acme/tools/cli:v3 bin/tool README.md --annotation org.opencontainers.image.source=https://example.org/src`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "annotation", Aliases: []string{"a"}, Usage: "add a manifest annotation `KEY=VALUE` (repeatable)"},
			&cli.BoolFlag{Name: "force", Usage: "with an origin: on a lost race, replace the tag even if another writer changed it"},
			jsonFlag,
		},
		Action: runPush,
	}
}

func runPush(c *cli.Context) error {
	if err := needArgs(c, 2, -1); err != nil {
		return err
	}
	ref, err := opm.ParseTagReference(c.Args().First())
	if err != nil {
		return err
	}
	ann, err := parseAnnotations(getenv(c, "SOURCE_DATE_EPOCH"), c.StringSlice("annotation"))
	if err != nil {
		return err
	}
	return withHome(c, func(r *registry.Registry) error {
		res, err := r.Push(c.Context, ref, absPaths(c, c.Args().Tail()), registry.PushOptions{
			Annotations: ann, Progress: newProgress(c, "push"), Force: c.Bool("force"),
		})
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c, res)
		}
		if res.SkippedGit > 0 {
			fmt.Fprintf(c.App.ErrWriter, "skipped %d file(s) of .git directories (a package never carries git's own directory)\n", res.SkippedGit)
		}
		if !res.Committed {
			fmt.Fprintf(c.App.ErrWriter, "%s already at %s: nothing to commit\n", ref, res.Digest)
		}
		fmt.Fprintln(c.App.Writer, res.Digest)
		return nil
	})
}

// parseAnnotations turns KEY=VALUE flags into a map and adds the creation
// time from epoch, $SOURCE_DATE_EPOCH (the reproducible-builds convention),
// when set.
func parseAnnotations(epoch string, kvs []string) (map[string]string, error) {
	ann := map[string]string{}
	if s := epoch; s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, usagef("SOURCE_DATE_EPOCH=%q is not a whole number of seconds", s)
		}
		ann[opm.AnnotationCreated] = time.Unix(sec, 0).UTC().Format(time.RFC3339)
	}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("annotation %q: want KEY=VALUE", kv)
		}
		ann[k] = v
	}
	return ann, nil
}
