package main

import (
	"encoding/json"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// What commands print: JSON with --json, else tables and lines.

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON"}

func printJSON(g globalOptions, v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONThen prints v as JSON and returns err: the result of a command
// that may have done part of its work before it failed. A failure to print
// is returned instead.
func printJSONThen(g globalOptions, v any, err error) error {
	if perr := printJSON(g, v); perr != nil {
		return perr
	}
	return err
}

// nonNil is s, or an empty slice for nil: a JSON list prints as [], not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// newTable writes tab-separated cells as aligned columns; Flush ends it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// short abbreviates a digest for tables: sha256:0123456789ab.
func short(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

// shortHash abbreviates a commit hash to 12 digits.
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// orNone is s, or "none" when it is empty.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
