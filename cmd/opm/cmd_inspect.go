package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print a package's manifest, byte for byte, or a Helm chart's own files",
		ArgsUsage: "REF",
		Description: `The manifest is an OCI image manifest; its sha256 is the package digest.
For a Helm chart, --values, --chart and --readme print its values.yaml,
Chart.yaml and README.md from inside the chart's archive, as helm show
values|chart|readme does.

Example:
   opm inspect acme/web/site:v1.2.0 | jq .layers[].annotations
   opm inspect acme/charts/nginx:1.4.0 --values`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "values", Usage: "a Helm chart's values.yaml"},
			&cli.BoolFlag{Name: "chart", Usage: "a Helm chart's Chart.yaml"},
			&cli.BoolFlag{Name: "readme", Usage: "a Helm chart's README.md"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			return runInspect(globals(c), c.Args().First(), c.Bool("values"), c.Bool("chart"), c.Bool("readme"))
		},
	}
}

// runInspect prints the manifest of the package ref names, or the chart
// files asked for.
func runInspect(g globalOptions, ref string, values, chart, readme bool) error {
	p, err := resolvePackage(g, ref)
	if err != nil || !values && !chart && !readme {
		if err == nil {
			_, err = g.stdout.Write(p.Bytes)
		}
		return err
	}
	return withHome(g, func(r *registry.Registry) error {
		c, err := r.Chart(g.ctx, p.Ref, p.Bytes)
		if err != nil {
			return err
		}
		for _, f := range []struct {
			want       bool
			name, text string
		}{{chart, "Chart.yaml", c.ChartYAML}, {values, "values.yaml", c.ValuesYAML}, {readme, "README.md", c.Readme}} {
			if !f.want {
				continue
			}
			if f.text == "" {
				return opm.Errorf(opm.ErrNotFound, "%s: the chart's archive has no %s", p.Ref, f.name)
			}
			fmt.Fprint(g.stdout, f.text)
		}
		return nil
	})
}
