package main

import (
	"github.com/urfave/cli/v2"
)

func remoteCommand() *cli.Command {
	return &cli.Command{
		Name:  "remote",
		Usage: "add, list or remove remotes (git metadata plus a blob bucket)",
		Description: `A remote is another registry: its metadata in a git repository and its
blobs in a bucket. They are git configuration of <home>/meta.git
(remote.NAME.url, remote.NAME.blobs, and remote.NAME.trust: the key its
signed commits are verified from, see opm signers). With a remote called origin, opm push
publishes to it and opm sync follows it; its bucket serves blobs on demand
when opm.blobs is unset.

Metadata URLs: a local path, file://, git://, http(s)://, ssh://.
Bucket URLs: file://, s3:// (with endpoint parameters), gs://, azblob://,
mem:// (docs/storage.md: each cloud's credentials).

Example:
   opm remote add origin --meta https://git.example.org/opm-meta.git --blobs 's3://opm?region=eu-west-1'
   opm remote add mirror --meta /srv/mirror-meta.git --blobs file:///srv/mirror-blobs
   opm remote add origin --meta ssh://git@git.example.org/opm-meta.git --blobs gs://opm --trust SHA256:0sGq…
   opm remote ls
   opm remote rm mirror`,
		Subcommands: []*cli.Command{
			remoteAddCommand(),
			remoteLsCommand(),
			remoteRmCommand(),
			remoteTrustCommand(),
		},
	}
}
