package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func fsckCommand() *cli.Command {
	readData := &optionalValue{}
	return &cli.Command{
		Name:      "fsck",
		Usage:     "check the registry: metadata, blobs, and with --read-data their content",
		ArgsUsage: "[--read-data[=PERCENT|N/M]] [--repair] [--remote NAME]",
		Description: `Checks that every tag and manifest of the metadata parses and sits under a
valid name, that every blob a manifest names is in the registry's store (the
bucket, or the local store of a home without one) with the size the manifest
gives, and the local copies' sizes; that the registry's allowed signers and
timestamp parse, and that the timestamp has not expired (stale). With
--remote, the remote's new commits are verified first, as opm sync does
(a refused history is exit 10, nothing of it taken). Each problem is printed
with the tags it affects.

--read-data also re-hashes content: the registry's copy of every blob named,
and every local file; a big file's chunk list is checked against the file's
bytes in the same pass (bad-chunks), and the chunks kept of big files read
in part are checked against their lists (bad-partial). --read-data=PERCENT checks a random
share of the blobs; --read-data=N/M checks slice N of M (chosen by digest),
so that running 1/M to M/M over M days verifies everything once.

--repair mends this home: it removes local copies (and chunks) whose bytes are wrong (they
are fetched again from the bucket when next read; in a home without a bucket
they were the only copy, and the tags naming them stay broken), removes
temporary files left by writers that crashed (those written to in the last 10
minutes are kept: a write may be in progress) and rebuilds the index from the
files. Nothing in the metadata or a bucket is ever changed.

Leftover temporary files are reported but are not problems. Exit code 8 means
problems were found; 0 that there were none (or --repair fixed them all).

Example:
   opm fsck
   opm fsck --read-data
   opm fsck --read-data=10%
   opm fsck --read-data=$(( $(date +%j) % 7 + 1 ))/7     # a seventh a day
   opm fsck --remote origin --json
   opm fsck --read-data --repair`,
		Flags: []cli.Flag{
			&cli.GenericFlag{Name: "read-data", Value: readData, Usage: "also re-hash content: all, or `[=PERCENT|N/M]` of it"},
			&cli.StringFlag{Name: "remote", Usage: "check remote `NAME` (its metadata and bucket) instead of this home"},
			&cli.BoolFlag{Name: "repair", Usage: "remove corrupt local copies and leftovers, rebuild the index"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 1 && readData.set && readData.value == "" {
				return usagef("--read-data takes its value after '=': --read-data=%s", c.Args().First())
			}
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			opts := fsckOptions{readData: *readData, remote: c.String("remote"), repair: c.Bool("repair"), json: c.Bool("json")}
			return runFsck(globals(c), opts)
		},
	}
}

type fsckOptions struct {
	readData optionalValue // --read-data, and its PERCENT or N/M
	remote   string        // "": this home
	repair   bool
	json     bool
}

// runFsck checks the registry; problems found are an opm.ErrProblems error.
func runFsck(g globalOptions, opts fsckOptions) error {
	subset, err := registry.ParseSubset(opts.readData.value)
	if err != nil {
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		res, err := r.Fsck(g.ctx, registry.FsckOptions{
			Remote:   opts.remote,
			ReadData: opts.readData.set,
			Subset:   subset,
			Repair:   opts.repair,
			Progress: newProgress(g, opts.json, "verify"),
		})
		if err != nil {
			return err
		}
		var problems error
		if n := res.Damaged(); n > 0 {
			problems = opm.Errorf(opm.ErrProblems, "fsck: %d problem(s) found (listed above)", n)
		}
		if opts.json {
			return printJSONThen(g, res, problems)
		}
		printFsck(g, res)
		return problems
	})
}

// printFsck prints the problems fsck found and its summary.
func printFsck(g globalOptions, res *registry.FsckResult) {
	w := g.stdout
	for _, p := range res.Problems {
		subject := p.Path
		if p.Digest != "" {
			subject = p.Digest.String()
		}
		line := fmt.Sprintf("%-16s %s", p.Kind, subject)
		if p.Where != "" {
			line += " (" + p.Where + ")"
		}
		line += ": " + p.Detail
		if len(p.Tags) > 0 {
			line += "; affects " + strings.Join(p.Tags[:min(3, len(p.Tags))], ", ")
			if len(p.Tags) > 3 {
				line += fmt.Sprintf(" and %d more", len(p.Tags)-3)
			}
		}
		if p.Repaired {
			line += " [repaired]"
		}
		fmt.Fprintln(w, opm.Printable(line)) // paths and details may be an origin's text
	}
	data := ""
	if res.ReadData != "" {
		data = fmt.Sprintf(", read-data %s: %s verified", res.ReadData, opm.HumanSize(res.BytesVerified))
	}
	fmt.Fprintf(g.stderr, "checked %s at %s: %d tag(s), %d manifest(s) by digest, %d blob(s), %d local file(s)%s\n",
		res.Target, shortHash(res.Commit), res.Tags, res.Manifests, res.Blobs, res.LocalFiles, data)
	switch n := res.Damaged(); {
	case n == 0 && res.Repaired > 0:
		fmt.Fprintf(g.stderr, "no problems left (%d repaired)\n", res.Repaired)
	case n == 0:
		fmt.Fprintln(g.stderr, "no problems found")
	}
	if res.IndexRebuilt {
		fmt.Fprintln(g.stderr, "index rebuilt from the files")
	}
}

// optionalValue is a flag that may be given alone (--read-data) or with a
// value (--read-data=10%).
type optionalValue struct {
	set   bool
	value string
}

func (v *optionalValue) Set(s string) error {
	v.set, v.value = s != "false", s
	if s == "true" || s == "false" {
		v.value = ""
	}
	return nil
}

func (v *optionalValue) String() string { return v.value }

// IsBoolFlag lets the flag package accept the flag without a value.
func (v *optionalValue) IsBoolFlag() bool { return true }
