package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/daemon"
	"github.com/openpm/opm/registry"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the home's head, its daemon and what it trusts of each remote",
		Description: `Prints the home, the commit its main is at, the daemon holding it (its mount
point), and for each remote the key its signed commits are verified from
and the last verified commit. A daemon that follows origin also says
whether it refused origin's last head, and why: the mount then keeps
showing the last verified state (the same is in <mnt>/.opm/status).

Example:
   opm status
   opm status --json`,
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			return runStatus(globals(c), c.Bool("json"))
		},
	}
}

// homeStatus is what opm status prints.
type homeStatus struct {
	Home    string                `json:"home"`
	Head    string                `json:"head"`
	Daemon  *daemon.Info          `json:"daemon,omitempty"`
	Remotes []registry.TrustState `json:"remotes"`
}

func runStatus(g globalOptions, asJSON bool) error {
	var st homeStatus
	err := withHome(g, func(r *registry.Registry) error {
		head, err := r.Head()
		if err != nil {
			return err
		}
		st.Home, st.Head = r.Home(), head.String()
		st.Remotes, err = r.TrustStatus()
		if info, ok := daemon.Running(r.Home()); ok {
			st.Daemon = &info
		}
		return err
	})
	if err != nil {
		return err
	}
	st.Remotes = nonNil(st.Remotes)
	if asJSON {
		return printJSON(g, st)
	}
	tw := newTable(g.stdout)
	fmt.Fprintf(tw, "home\t%s\n", st.Home)
	fmt.Fprintf(tw, "head\t%s\n", shortHash(st.Head))
	if d := st.Daemon; d != nil {
		fmt.Fprintf(tw, "daemon\tpid %d, mounted at %s since %s\n", d.PID, d.Mountpoint, d.Started.Format(time.RFC3339))
	}
	for _, s := range st.Remotes {
		switch {
		case s.Key == "":
			fmt.Fprintf(tw, "%s\tunsigned or not yet seen signed (no key pinned)\n", s.Remote)
		default:
			fmt.Fprintf(tw, "%s\ttrusts %s, verified up to %s\n", s.Remote, s.Key, shortHash(s.Verified))
		}
		switch {
		case s.Stale:
			fmt.Fprintf(tw, "%s\tSTALE: its timestamp expired at %s (a frozen or unreachable origin)\n", s.Remote, s.FreshUntil.Format(time.RFC3339))
		case s.FreshUntil != nil:
			fmt.Fprintf(tw, "%s\tcurrent until %s\n", s.Remote, s.FreshUntil.Format(time.RFC3339))
		}
		if s.Refused != "" {
			fmt.Fprintf(tw, "%s\trefused at %s: %s\n", s.Remote, s.At.Format(time.RFC3339), opm.Printable(s.Refused))
		}
	}
	return tw.Flush()
}
