package gitmeta

import (
	"os"
	"strings"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// openStorage opens go-git's storage of the bare repository at path, with
// the lock files of git's protocol (<ref>.lock) hidden from it. go-git
// reads every file under refs/ as a ref when it lists them (every fetch and
// push does), and a lock file being written, or left empty by a writer
// killed between creating and writing it, would fail each one with "ref
// file is empty". go-git itself never writes lock files (it takes flocks).
func openStorage(path string, c cache.Object) *filesystem.Storage {
	return filesystem.NewStorage(noLocks{osfs.New(path)}, c)
}

// noLocks is a filesystem whose directory listings leave out *.lock files.
type noLocks struct{ billy.Filesystem }

func (f noLocks) ReadDir(p string) ([]os.FileInfo, error) {
	list, err := f.Filesystem.ReadDir(p)
	out := list[:0]
	for _, fi := range list {
		if fi.IsDir() || !strings.HasSuffix(fi.Name(), ".lock") {
			out = append(out, fi)
		}
	}
	return out, err
}

func (f noLocks) Chroot(p string) (billy.Filesystem, error) {
	fs, err := f.Filesystem.Chroot(p)
	if err != nil {
		return nil, err
	}
	return noLocks{fs}, nil
}
