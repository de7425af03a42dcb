//go:build tools

// Package conformance pins the OCI distribution-spec conformance suite, a Go
// test package, so that `make conformance` can build it with `go test -c`
// without adding its dependencies to opm's own go.mod.
package conformance

import _ "github.com/opencontainers/distribution-spec/conformance"
