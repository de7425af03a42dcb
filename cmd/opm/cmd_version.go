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
		Action: func(c *cli.Context) error {
			return runVersion(globals(c))
		},
	}
}

func runVersion(g globalOptions) error {
	fmt.Fprintf(g.stdout, "opm %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
	return nil
}
