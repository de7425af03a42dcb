package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// verifyBlobDir hashes every file under <blobs>/sha256 and returns how many
// there are and which ones do not hold the content their name says.
func verifyBlobDir(blobs string) (n int, bad []string, err error) {
	root := filepath.Join(blobs, "sha256")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) && p == root {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		n++
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if hex.EncodeToString(h.Sum(nil)) != filepath.Base(p) || !strings.HasPrefix(filepath.Base(p), filepath.Base(filepath.Dir(p))) {
			bad = append(bad, p)
		}
		return nil
	})
	return n, bad, err
}
