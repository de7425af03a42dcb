//go:build tools

// Package latest pins the current OCI distribution-spec conformance program
// (a main package, configured by OCI_* variables), run by ../run.sh after the
// v1.1 Ginkgo suite of the parent module.
package latest

import _ "github.com/opencontainers/distribution-spec/conformance"
