package fs

import (
	"context"
	"encoding/json"
	"os"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"
)

// Status is what <mnt>/.opm/status holds.
type Status struct {
	Mountpoint  string    `json:"mountpoint"`
	Home        string    `json:"home"`
	PID         int       `json:"pid"`
	Started     time.Time `json:"started"`
	Head        string    `json:"head"`
	HeadMoves   int64     `json:"head_moves"`
	Blobs       int       `json:"blobs_cached"`
	BlobBytes   int64     `json:"bytes_cached"`
	Fetches     int64     `json:"fetches"`
	Errors      int64     `json:"errors"`
	Commands    int64     `json:"commands"` // CLI commands carried out by this daemon
	Passthrough bool      `json:"passthrough"`
}

// Status reports the mount's state. Counting the cached blobs walks the
// local store.
func (fsys *FS) Status() Status {
	st := Status{
		Mountpoint:  fsys.mnt,
		Home:        fsys.reg.Dir,
		PID:         os.Getpid(),
		Started:     fsys.started,
		Head:        fsys.cur.Load().snap.Commit().String(),
		HeadMoves:   fsys.headMoves.Load(),
		Fetches:     fsys.fetches.Load(),
		Errors:      fsys.ioErrors.Load(),
		Commands:    fsys.commands.Load(),
		Passthrough: fsys.passthrough,
	}
	err := fsys.reg.Local.Walk(func(_ digest.Digest, size int64) error {
		st.Blobs++
		st.BlobBytes += size
		return nil
	})
	if err != nil {
		fsys.log.Error("count cached blobs", "err", err)
	}
	return st
}

// opmDir is <mnt>/.opm, the mount's own files.
type opmDir struct {
	gofs.Inode
	readOnly
	fs *FS
}

var (
	_ = (gofs.NodeLookuper)((*opmDir)(nil))
	_ = (gofs.NodeReaddirer)((*opmDir)(nil))
	_ = (gofs.NodeGetattrer)((*opmDir)(nil))
)

const statusName = "status"

func (d *opmDir) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.fs.started)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (d *opmDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name != statusName {
		return nil, syscall.ENOENT
	}
	f := &statusFile{fs: d.fs}
	f.attr(&out.Attr)
	out.SetEntryTimeout(immutableTimeout)
	return d.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino("special", ".opm/status")}), 0
}

func (d *opmDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return gofs.NewListDirStream([]fuse.DirEntry{{Name: statusName, Mode: syscall.S_IFREG, Ino: ino("special", ".opm/status")}}), 0
}

// statusFile is .opm/status: its content is made when it is opened and
// read directly (it has no fixed size).
type statusFile struct {
	gofs.Inode
	readOnly
	fs *FS
}

var (
	_ = (gofs.NodeGetattrer)((*statusFile)(nil))
	_ = (gofs.NodeOpener)((*statusFile)(nil))
)

func (f *statusFile) attr(a *fuse.Attr) {
	now := time.Now()
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.SetTimes(&now, &now, &now)
}

func (f *statusFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	return 0
}

func (f *statusFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	b, err := json.MarshalIndent(f.fs.Status(), "", "  ")
	if err != nil {
		return nil, 0, syscall.EIO
	}
	return bytesFile(append(b, '\n')), fuse.FOPEN_DIRECT_IO, 0
}

// bytesFile is an open file made of bytes in memory.
type bytesFile []byte

var _ = (gofs.FileReader)(bytesFile(nil))

func (b bytesFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(b)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(b[off:min(int64(len(b)), off+int64(len(dest)))]), 0
}
