package opmfs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/openpm/opm/registry"
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
	Fetches     int64     `json:"fetches"` // blobs the daemon asked the bucket for
	Errors      int64     `json:"errors"`
	Commands    int64     `json:"commands"` // CLI commands carried out by this daemon
	Passthrough bool      `json:"passthrough"`
	// ReadPath is what serves the live head's packages: "overlay" (the
	// kernel, after a package's first lookup) or "fuse" (this process).
	ReadPath string        `json:"read_path"`
	Overlay  OverlayStatus `json:"overlay"`
	// Trust is the last verification of each remote's signed metadata by
	// this daemon: a refused head says why (the mount keeps showing the
	// last verified one).
	Trust []registry.TrustState `json:"trust,omitempty"`
}

// StatusAge is how old a read of .opm/status may be. Its content is made
// at each stat (fill), and the daemon asks the kernel to keep the
// attributes for 1 ns, which the kernel rounds up to the next clock tick (4
// ms at HZ=250, 10 ms at HZ=100): a stat and a read within the same tick as
// the one before are answered from what that one made.
const StatusAge = 10 * time.Millisecond

// ReadStatus reads the status of the mount at mnt (<mnt>/.opm/status). It
// first lets StatusAge pass, so that what it reads shows everything that
// happened before the call (a test that looked into a package and then
// reads the status must see that look).
func ReadStatus(mnt string) (Status, error) {
	time.Sleep(StatusAge)
	var st Status
	b, err := os.ReadFile(filepath.Join(mnt, opmDirName, statusName))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s/%s/%s: %w", mnt, opmDirName, statusName, err)
	}
	return st, nil
}

// Status reports the mount's state. Counting the cached blobs walks the
// local store.
func (fsys *FS) Status() Status {
	st := Status{
		Mountpoint:  fsys.mnt,
		Home:        fsys.reg.Home(),
		PID:         os.Getpid(),
		Started:     fsys.started,
		Head:        fsys.cur.Load().Commit().String(),
		HeadMoves:   fsys.headMoves.Load(),
		Fetches:     fsys.reg.Fetches(),
		Errors:      fsys.ioErrors.Load(),
		Commands:    fsys.commands.Load(),
		Passthrough: fsys.passthrough,
		ReadPath:    "fuse",
		Overlay:     fsys.ovl.status(),
		Trust:       fsys.reg.TrustStates(),
	}
	if st.Overlay.Off == "" {
		st.ReadPath = "overlay"
	}
	var err error
	if st.Blobs, st.BlobBytes, err = fsys.reg.LocalUsage(); err != nil {
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
	if name == blobsDirName {
		dirAttr(&out.Attr, d.fs.started)
		out.SetEntryTimeout(immutableTimeout)
		out.SetAttrTimeout(immutableTimeout)
		return d.NewInode(ctx, &blobsDir{lookupOnly: lookupOnly{fs: d.fs}}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino("blobs", "")}), 0
	}
	if name != statusName {
		return nil, syscall.ENOENT
	}
	f := &statusFile{fs: d.fs}
	f.fill(&out.Attr)
	if d.fs.opts.NoOpen {
		out.SetAttrTimeout(time.Nanosecond) // 0 would mean go-fuse's default
	}
	out.SetEntryTimeout(immutableTimeout)
	return d.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino("special", ".opm/status")}), 0
}

func (d *opmDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return gofs.NewListDirStream([]fuse.DirEntry{
		{Name: blobsDirName, Mode: syscall.S_IFDIR, Ino: ino("blobs", "")},
		{Name: statusName, Mode: syscall.S_IFREG, Ino: ino("special", ".opm/status")},
	}), 0
}

// statusFile is .opm/status: its content is made when it is opened and
// read directly (it has no fixed size). With Options.NoOpen there is no
// open: the content is made at each stat, which gives its size, and the
// reads that follow serve it.
type statusFile struct {
	gofs.Inode
	readOnly
	fs *FS

	mu   sync.Mutex
	body []byte // NoOpen: the content as of the last stat
}

var (
	_ = (gofs.NodeGetattrer)((*statusFile)(nil))
	_ = (gofs.NodeOpener)((*statusFile)(nil))
	_ = (gofs.NodeReader)((*statusFile)(nil))
)

func (f *statusFile) attr(a *fuse.Attr) {
	now := time.Now()
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.SetTimes(&now, &now, &now)
}

func (f *statusFile) content() []byte {
	b, err := json.MarshalIndent(f.fs.Status(), "", "  ")
	if err != nil {
		return nil
	}
	return append(b, '\n')
}

// fill fills the attributes; with NoOpen it makes the content, whose size
// the kernel reads up to.
func (f *statusFile) fill(a *fuse.Attr) {
	f.attr(a)
	if f.fs.opts.NoOpen {
		b := f.content()
		f.mu.Lock()
		f.body = b
		f.mu.Unlock()
		a.Size = uint64(len(b))
	}
}

func (f *statusFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fill(&out.Attr)
	if f.fs.opts.NoOpen {
		// Asked again before every read (0 would mean go-fuse's default).
		out.SetTimeout(time.Nanosecond)
	}
	return 0
}

func (f *statusFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if f.fs.opts.NoOpen {
		return nil, 0, syscall.ENOSYS
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	b := f.content()
	if b == nil {
		return nil, 0, syscall.EIO
	}
	return bytesFile(b), fuse.FOPEN_DIRECT_IO, 0
}

func (f *statusFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, ok := fh.(gofs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	f.mu.Lock()
	b := f.body
	f.mu.Unlock()
	if b == nil {
		b = f.content()
	}
	return bytesFile(b).Read(ctx, dest, off)
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
