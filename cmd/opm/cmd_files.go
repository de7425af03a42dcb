package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
)

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
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			return runFiles(globals(c), filesOptions{json: c.Bool("json")}, c.Args().First())
		},
	}
}

type filesOptions struct {
	json bool
}

// runFiles lists the files of the package ref names.
func runFiles(g globalOptions, opts filesOptions, ref string) error {
	p, err := resolvePackage(g, ref)
	if err != nil {
		return err
	}
	files := p.Manifest.Files()
	if opts.json {
		return printJSON(g, filesJSON(files))
	}
	w := newTable(g.stdout)
	for _, f := range files {
		name := f.Path
		if f.Symlink != "" {
			name += " -> " + f.Symlink
		}
		when := "-" // none recorded: readers show the tag's time
		if !f.ModTime.IsZero() {
			when = f.ModTime.Local().Format("2006-01-02 15:04:05.000000000")
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", opm.Printable(name), opm.FormatMode(f.Mode), f.Size, f.Digest, when)
	}
	return w.Flush()
}

// fileJSON is a file as opm files --json prints it.
type fileJSON struct {
	Path    string     `json:"path"`
	Mode    string     `json:"mode"`
	Size    int64      `json:"size"`
	Digest  string     `json:"digest"`
	Symlink string     `json:"symlink,omitempty"`
	MTime   *time.Time `json:"mtime,omitempty"`
	Chunks  string     `json:"chunks,omitempty"`
}

func filesJSON(files []opm.File) []fileJSON {
	out := make([]fileJSON, len(files))
	for i, f := range files {
		out[i] = fileJSON{Path: f.Path, Mode: opm.FormatMode(f.Mode), Size: f.Size, Digest: f.Digest.String(), Symlink: f.Symlink}
		if !f.ModTime.IsZero() {
			out[i].MTime = &files[i].ModTime
		}
		if f.Chunks != nil {
			out[i].Chunks = f.Chunks.Digest.String()
		}
	}
	return out
}
