//go:build !linux

package cas

import (
	"context"
	"os"

	"github.com/opencontainers/go-digest"
)

// copyFileVerified is Linux's; elsewhere CopyOut uses the pipeline.
func copyFileVerified(context.Context, *os.File, *os.File, int64) (digest.Digest, int64, bool, error) {
	return "", 0, false, nil
}
