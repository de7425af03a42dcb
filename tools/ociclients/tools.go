//go:build tools

// Package ociclients pins the OCI command-line clients the end-to-end tests
// of server/ build and run against `opm serve`: oras, crane, regctl and helm. It is its own
// module so that their dependencies stay out of opm's go.mod.
package ociclients

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
	_ "github.com/regclient/regclient/cmd/regctl"
	_ "helm.sh/helm/v4/cmd/helm"
	_ "oras.land/oras/cmd/oras"
)
