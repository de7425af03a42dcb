package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print opm's version",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			return runVersion(globals(c), c.Bool("json"))
		},
	}
}

func runVersion(g globalOptions, asJSON bool) error {
	if asJSON {
		return printJSON(g, map[string]string{"version": version, "os": runtime.GOOS, "arch": runtime.GOARCH, "go": runtime.Version()})
	}
	fmt.Fprintf(g.stdout, "opm %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
	return nil
}
