package gitmeta

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// UpdateFile rewrites a file of the repository (such as config) under git's
// lock-file protocol: it holds <path>.lock, reads the file, writes fn's
// answer to the lock file, fsyncs it, renames it over the file and fsyncs
// the directory. Writers of the same file — other processes, the git CLI —
// wait for each other, and no reader ever sees half a file. A missing file
// reads as empty.
func UpdateFile(ctx context.Context, path string, fn func(old []byte) ([]byte, error)) error {
	lock := path + ".lock"
	f, err := lockFile(ctx, lock)
	if err != nil {
		return fmt.Errorf("update %s: %w", filepath.Base(path), err)
	}
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(lock)
		}
	}()
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	data, err := fn(old)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("update %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("update %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("update %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(lock, path); err != nil {
		return fmt.Errorf("update %s: %w", filepath.Base(path), err)
	}
	renamed = true
	return fsync(filepath.Dir(path))
}
