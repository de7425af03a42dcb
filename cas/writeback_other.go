//go:build !linux

package cas

import (
	"fmt"
	"os"
)

// startWriteback does nothing where sync_file_range is not available.
func startWriteback(*os.File, int64, int64) {}

// flushFiles fsyncs each file: syncfs(2) is Linux's.
func flushFiles(_ string, files []string) error {
	for _, f := range files {
		if err := syncFile(f); err != nil {
			return err
		}
	}
	return nil
}

// flushDirs fsyncs each directory.
func flushDirs(_ string, dirs map[string]bool) error {
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// syncFile fsyncs one file by name.
func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob store: sync %s: %w", name, err)
	}
	return nil
}
