package cas

import (
	"os"
	"syscall"
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
