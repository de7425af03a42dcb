package cas

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing the range to disk now,
// without waiting, so that the fsync at the end has little left to do.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SyncFileRange(int(fd), off, n, 0x2) // SYNC_FILE_RANGE_WRITE
	})
}

// flushFiles makes the files' bytes durable: one syncfs(2) of the
// filesystem holding dir does it for all of them.
func flushFiles(dir string, _ []string) error { return syncFS(dir) }

// flushDirs makes renames into dirs durable, with one syncfs(2).
func flushDirs(dir string, _ map[string]bool) error { return syncFS(dir) }

// syncFS flushes the whole filesystem holding dir.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("blob store: syncfs %s: %w", dir, err)
	}
	return nil
}
