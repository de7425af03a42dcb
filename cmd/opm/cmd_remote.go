package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
)

func remoteCommand() *cli.Command {
	return &cli.Command{
		Name:  "remote",
		Usage: "add, list or remove remotes (git metadata plus a blob bucket)",
		Description: `A remote is another registry: its metadata in a git repository and its
blobs in a bucket. They are git configuration of <home>/meta.git
(remote.NAME.url, remote.NAME.blobs). With a remote called origin, opm push
publishes to it and opm sync follows it; its bucket serves blobs on demand
when opm.blobs is unset.

Metadata URLs: a local path, file://, git://, http(s)://, ssh://.
Bucket URLs: file://, s3:// (with endpoint parameters), gs://, azblob://, mem://.

Example:
   opm remote add origin --meta https://git.example.org/opm-meta.git --blobs 's3://opm?region=eu-west-1'
   opm remote add mirror --meta /srv/mirror-meta.git --blobs file:///srv/mirror-blobs
   opm remote ls
   opm remote rm mirror`,
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a remote",
				ArgsUsage: "NAME --meta URL --blobs URL",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "meta", Usage: "git `URL` of the metadata"},
					&cli.StringFlag{Name: "blobs", Usage: "bucket `URL` of the blobs"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 || c.String("meta") == "" || c.String("blobs") == "" {
						return usagef("usage: opm remote add NAME --meta URL --blobs URL")
					}
					return withHome(c, func(r *registry.Registry) error {
						meta := c.String("meta")
						if registry.IsLocalPath(meta) {
							meta = absPath(c, meta)
						}
						return r.AddRemote(c.Context, registry.Remote{Name: c.Args().First(), URL: meta, Blobs: c.String("blobs")})
					})
				},
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list the remotes",
				Flags:   []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0); err != nil {
						return err
					}
					return withHome(c, func(r *registry.Registry) error {
						rms, err := r.Remotes()
						if err != nil {
							return err
						}
						if c.Bool("json") {
							if rms == nil {
								rms = []registry.Remote{}
							}
							return printJSON(c, rms)
						}
						tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						for _, rm := range rms {
							fmt.Fprintf(tw, "%s\t%s\t%s\n", rm.Name, rm.URL, rm.Blobs)
						}
						return tw.Flush()
					})
				},
			},
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove a remote",
				ArgsUsage: "NAME",
				Description: "Forgets the remote, where its main was last seen, and the scratch repository of\n" +
					"mirrors into it (<home>/mirrors/NAME.git). The remote itself is not touched.",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, 1); err != nil {
						return err
					}
					return withHome(c, func(r *registry.Registry) error { return r.RemoveRemote(c.Args().First()) })
				},
			},
		},
	}
}
