package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm"
	"github.com/openpm/opm/daemon"
	opmfs "github.com/openpm/opm/fs"
)

func umountCommand() *cli.Command {
	return &cli.Command{
		Name:      "umount",
		Usage:     "unmount an opm mount (its daemon then exits)",
		ArgsUsage: "MOUNTPOINT",
		Description: `Asks the daemon serving MOUNTPOINT to take the mount down, and returns
once it has: the daemon stops covering packages, detaches their overlays,
unmounts FUSE and lets the home go (the next command or mount on the home
finds it free). While processes use the mount (open files, a working
directory there), nothing is unmounted: the refusal names the busiest of
them and the mount goes on serving; --lazy detaches it at once instead, and
the daemon exits when the last file open there is closed. A mount left by a
daemon that died is cleaned up directly.

Examples:
   opm umount /mnt/opm
   opm umount --lazy /mnt/opm`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "lazy", Aliases: []string{"l"}, Usage: "detach now even if files are open (MNT_DETACH)"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			return runUmount(globals(c), umountOptions{lazy: c.Bool("lazy")}, c.Args().First())
		},
	}
}

type umountOptions struct {
	lazy bool
}

// runUmount asks the daemon serving mountpoint to unmount it, or unmounts
// it itself when the daemon that served it is gone.
func runUmount(g globalOptions, opts umountOptions, mountpoint string) error {
	dir := absPath(g, mountpoint)
	home, isOpm := opmfs.MountedHome(dir)
	if !isOpm {
		// As root, umount(2) would take any filesystem down.
		return opm.Errorf(opm.ErrNotFound, "%s is not an opm mount", dir)
	}
	if info, ok := daemon.Running(home); ok && opmfs.SameMountpoint(info.Mountpoint, dir) {
		served, res, err := daemon.Unmount(g.ctx, home, daemon.UnmountRequest{Mountpoint: dir, Lazy: opts.lazy})
		if err != nil {
			return err
		}
		if served {
			if res.Code != 0 {
				return &daemonError{code: res.Code, msg: res.Error}
			}
			if opts.lazy {
				fmt.Fprintf(g.stderr, "detached %s; its daemon (pid %d) exits once the last file open there is closed\n", dir, info.PID)
			} else {
				fmt.Fprintf(g.stderr, "unmounted %s; its daemon (pid %d) has let %s go\n", dir, info.PID, home)
			}
			return nil
		}
	}
	// No daemon serves the mount: one that died left it.
	if err := opmfs.UnmountOrphan(dir, opts.lazy); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "unmounted %s, left by an opm daemon that is gone\n", dir)
	return nil
}
