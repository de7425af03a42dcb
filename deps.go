//go:build tools

package opm

import (
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/johannesboyne/gofakes3"
	_ "github.com/opencontainers/go-digest"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/urfave/cli/v2"
	_ "gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob"
	_ "golang.org/x/sync/errgroup"
)
