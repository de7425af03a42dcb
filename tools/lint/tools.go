//go:build tools

// Package lint pins the linter `make lint` runs: staticcheck. It is its own
// module so that its dependencies stay out of opm's go.mod.
package lint

import _ "honnef.co/go/tools/cmd/staticcheck"
