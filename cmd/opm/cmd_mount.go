package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	opmfs "github.com/openpm/opm/fs"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount the registry read-only and serve the home as its daemon",
		ArgsUsage: "MOUNTPOINT",
		Description: `Shows <ns>/<project>/<repo>/<tag>/<files> under MOUNTPOINT; also
<repo>/@sha256:<hex>/ (a package by digest), .history/<commit>/ (the registry at
a commit) and .opm/status (JSON). The mount follows the registry's head: a
push, rm or sync shows within a second. Every write fails with EROFS.
The mounting process is the home's daemon: while it runs, every other opm
command on the home is carried out by it. It runs until 'opm umount
MOUNTPOINT', umount(8), SIGINT or SIGTERM. A mount left by a killed daemon
is cleaned up first.

Run as root, each package of the live head is served by the kernel alone
(an overlayfs mount over the package's directory, made after the first look
inside it; its bytes come straight from the local blob files) and by this
process otherwise (FUSE): see read_path in .opm/status.

Tuning knobs (environment; docs/mount.md has the measurements):
OPM_OVERLAY=0 serves everything through FUSE; OPM_OVERLAY_EROFS=0 writes
the overlays' metadata as directories, not EROFS images. OPM_FUSE_NOOPEN=0 makes the
kernel ask the daemon at every open (a round trip per open) so that FUSE
passthrough can hand it the blob file (OPM_FUSE_PASSTHROUGH=0 turns that
off too); by default the kernel opens without asking and warm reads come
from its page cache. OPM_FUSE_XATTR=1 offers each file's blob digest as
the extended attribute user.opm.digest ('opm files REF' lists them
either way); it is off because 'ls -l' then asks about the ACLs of every
file.

Example:
   opm mount --daemon /mnt/opm && ls /mnt/opm`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "daemon", Aliases: []string{"d"}, Usage: "return once mounted; the daemon runs in the background and logs to <home>/opm.log"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let every user read the mount (the kernel checks the permission bits)"},
			&cli.DurationFlag{Name: "sync-interval", Usage: "follow origin: fetch and fast-forward every `DURATION` (e.g. 30s; see opm sync)"},
			&cli.BoolFlag{Name: "require-fresh", Usage: "refuse (ESTALE) each open of a package file while origin's timestamp (opm timestamp) does not show the metadata current; packages are then served by FUSE alone"},
			&cli.StringFlag{Name: "http", Usage: "also serve HTTP on `HOST:PORT` from the daemon, as 'opm serve' (docs/http.md)"},
			&cli.StringFlag{Name: "http-token-file", Usage: "with --http: `FILE` holding the token writes need (else read-only)"},
			&cli.StringFlag{Name: "http-read-token-file", Usage: "with --http: `FILE` holding a token reads need (closes reads)"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			o, err := newMountOptions(c)
			if err != nil {
				return err
			}
			return runMount(globals(c), o)
		},
	}
}

// mountOptions are the settings of one mount.
type mountOptions struct {
	background    bool // --daemon: start the daemon and return once mounted
	home          string
	dir           string
	allowOther    bool
	passthrough   bool
	xattr         bool
	noOpen        bool          // not OPM_FUSE_NOOPEN=0: opmfs.Options.NoOpen
	noOverlay     bool          // OPM_OVERLAY=0: opmfs.Options.NoOverlay
	noMetaImage   bool          // OPM_OVERLAY_EROFS=0: opmfs.Options.NoMetaImage
	syncEvery     time.Duration // follow origin this often; 0: never
	requireFresh  bool          // refuse opens while origin's timestamp is not current
	httpAddr      string        // also serve HTTP here (opm serve); "": no
	httpToken     string        // the write token of httpTokenFile
	httpTokenFile string
	httpReadToken string // the read token of httpReadFile
	httpReadFile  string
}

// newMountOptions reads opm mount's flags and environment, and the tokens
// in the files the flags name.
func newMountOptions(c *cli.Context) (mountOptions, error) {
	g := globals(c)
	home, err := homeDir(g)
	if err != nil {
		return mountOptions{}, err
	}
	token, err := readToken(g, "http-token-file", c.String("http-token-file"))
	if err != nil {
		return mountOptions{}, err
	}
	rtok, err := readToken(g, "http-read-token-file", c.String("http-read-token-file"))
	if err != nil {
		return mountOptions{}, err
	}
	if (token != "" || rtok != "") && c.String("http") == "" {
		return mountOptions{}, usagef("--http-token-file and --http-read-token-file go with --http")
	}
	return mountOptions{
		background:    c.Bool("daemon"),
		httpAddr:      c.String("http"),
		httpToken:     token,
		httpTokenFile: optionalPath(g, c.String("http-token-file")),
		httpReadToken: rtok,
		httpReadFile:  optionalPath(g, c.String("http-read-token-file")),
		home:          home,
		dir:           absPath(g, c.Args().First()),
		allowOther:    c.Bool("allow-other"),
		passthrough:   os.Getenv("OPM_FUSE_PASSTHROUGH") != "0",
		xattr:         os.Getenv("OPM_FUSE_XATTR") == "1",
		noOpen:        os.Getenv("OPM_FUSE_NOOPEN") != "0",
		noOverlay:     os.Getenv("OPM_OVERLAY") == "0",
		noMetaImage:   os.Getenv("OPM_OVERLAY_EROFS") == "0",
		syncEvery:     c.Duration("sync-interval"),
		requireFresh:  c.Bool("require-fresh"),
	}, nil
}

// optionalPath is absPath of p, or "" when p is.
func optionalPath(g globalOptions, p string) string {
	if p == "" {
		return ""
	}
	return absPath(g, p)
}

// runMount mounts the home at o.dir and serves it as its daemon: in this
// process until the mount goes, or, with --daemon, in a process started in
// the background, returning once it has mounted.
func runMount(g globalOptions, o mountOptions) error {
	n, err := opmfs.CheckMountpoint(o.dir)
	if err != nil {
		return err
	}
	if n > 0 {
		what := fmt.Sprintf("its %d entries are", n)
		switch n {
		case 1:
			what = "its entry is"
		case 1000:
			what = "its 1000 or more entries are"
		}
		fmt.Fprintf(g.stderr, "opm: warning: %s is not empty: %s hidden while the registry is mounted there\n", o.dir, what)
	}
	if o.background {
		return startDaemon(o, g.stderr)
	}
	ready := readyPipe()
	err = runDaemon(g.ctx, o, ready.done)
	ready.done(err)
	return err
}
