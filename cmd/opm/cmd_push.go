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
committed, so a tag never names missing content. The same files with the
same modes and modification times give the same digest; pushing a tag that
already has that digest makes no commit.

Each file's modification time is recorded (to the nanosecond), so that the
mount and pull show it and programs that compare times (make, .pyc caches,
rsync) work. For reproducible builds, --mtime TIME (or $SOURCE_DATE_EPOCH, in
seconds) clamps them: a time later than TIME is recorded as TIME, as tar
--mtime with --clamp-mtime does. Symbolic links are kept as they are, absolute
and dangling ones too; --dereference stores what they point at instead.
Files hard-linked together are read once and share one blob.

The manifest carries no creation time unless one is given (as
--annotation org.opencontainers.image.created=… or via $SOURCE_DATE_EPOCH).

Example:
   opm push acme/web/site:v1.2.0 ./dist
   opm push acme/tools/cli:v3 bin/tool README.md --annotation org.opencontainers.image.source=https://example.org/src
   SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) opm push acme/web/site:v1.2.1 ./dist
   opm push acme/web/site:v1.2.2 ./dist --mtime 2026-01-01T00:00:00Z`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "annotation", Aliases: []string{"a"}, Usage: "add a manifest annotation `KEY=VALUE` (repeatable)"},
			&cli.BoolFlag{Name: "force", Usage: "with an origin: on a lost race, replace the tag even if another writer changed it"},
			&cli.StringFlag{Name: "mtime", Usage: "record no file time later than `TIME` (RFC 3339, or @SECONDS since 1970)"},
			&cli.BoolFlag{Name: "dereference", Aliases: []string{"L"}, Usage: "follow symbolic links: store what they point at"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, -1); err != nil {
				return err
			}
			opts := pushOptions{
				annotations: c.StringSlice("annotation"), force: c.Bool("force"), mtime: c.String("mtime"),
				dereference: c.Bool("dereference"), json: c.Bool("json"),
			}
			return runPush(globals(c), opts, c.Args().First(), c.Args().Tail()...)
		},
	}
}

type pushOptions struct {
	annotations []string // KEY=VALUE
	force       bool
	mtime       string // as given to --mtime
	dereference bool
	json        bool
}

// runPush stores paths as a package tagged ref.
func runPush(g globalOptions, opts pushOptions, ref string, paths ...string) error {
	tag, err := opm.ParseTagReference(ref)
	if err != nil {
		return err
	}
	ann, err := parseAnnotations(getenv(g, "SOURCE_DATE_EPOCH"), opts.annotations)
	if err != nil {
		return err
	}
	clamp, err := parseClamp(opts.mtime, getenv(g, "SOURCE_DATE_EPOCH"))
	if err != nil {
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.Push(g.ctx, tag, absPaths(g, paths), registry.PushOptions{
			Annotations: ann, Progress: newProgress(g, opts.json, "push"), Force: opts.force,
			Dereference: opts.dereference, ClampMTime: clamp,
		})
		if err != nil {
			return err
		}
		if opts.json {
			return printJSON(g, res)
		}
		if res.SkippedGit > 0 {
			fmt.Fprintf(g.stderr, "skipped %d file(s) of .git directories (a package never carries git's own directory)\n", res.SkippedGit)
		}
		if !res.Committed {
			fmt.Fprintf(g.stderr, "%s already at %s: nothing to commit\n", tag, res.Digest)
		}
		fmt.Fprintln(g.stdout, res.Digest)
		return nil
	})
}

// parseClamp reads the latest file time a push records: --mtime TIME
// (RFC 3339, or @SECONDS), else $SOURCE_DATE_EPOCH (seconds); zero when
// neither is given.
func parseClamp(flag, epoch string) (time.Time, error) {
	switch {
	case flag != "":
		if secs, ok := strings.CutPrefix(flag, "@"); ok {
			n, err := strconv.ParseInt(secs, 10, 64)
			if err != nil || n < 0 {
				return time.Time{}, usagef("--mtime %q: want @SECONDS since 1970, or an RFC 3339 time such as 2026-01-01T00:00:00Z", flag)
			}
			return time.Unix(n, 0).UTC(), nil
		}
		t, err := time.Parse(time.RFC3339Nano, flag)
		if err != nil || t.Before(opm.MinMTime) || t.After(opm.MaxMTime) {
			return time.Time{}, usagef("--mtime %q: want an RFC 3339 time such as 2026-01-01T00:00:00Z between 1970 and 2262, or @SECONDS", flag)
		}
		return t, nil
	case epoch != "":
		n, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, usagef("SOURCE_DATE_EPOCH=%q is not a whole number of seconds since 1970", epoch)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, nil
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
