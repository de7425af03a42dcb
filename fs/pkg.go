package opmfs

import (
	"context"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// pkg is one package as the mount shows it. Its manifest is read and
// arranged into directories on first use, and only for packages someone
// looks into.
type pkg struct {
	fs    *FS
	id    string    // identity, for inode numbers (see the package comment)
	name  string    // ns/project/repo:tag or ns/project/repo@sha256:…, for logs
	mtime time.Time // when the tag was set: the time of what records none

	// Where the manifest comes from: already parsed (by digest), or the
	// tag ref of view.
	manifest *opm.Manifest
	view     *registry.View
	ref      opm.Reference

	once     sync.Once
	lists    sync.Once            // the chunk lists fetched (lookInto)
	digest   digest.Digest        // the manifest's
	files    []opm.File           // the manifest's files
	dirs     map[string][]dirent  // directory path ("" is the top) -> children by name
	dirTimes map[string]time.Time // directory path -> the newest time below it
	err      error
}

// dirent is one name in a package directory; file is nil for a directory.
type dirent struct {
	name string
	file *opm.File
}

// entries returns the children of a directory of the package, sorted by
// name, building the directory index on first use.
func (p *pkg) entries(dir string) ([]dirent, error) {
	p.once.Do(p.build)
	return p.dirs[dir], p.err
}

// lookInto is entries for a lookup or a listing inside the package (not a
// stat of it: `ls -l` of a repository of 10k tags fetches nothing): the
// first one also fetches, in the background, the chunk lists of its big
// files, which a first read of one needs before its first chunk.
func (p *pkg) lookInto(dir string) ([]dirent, error) {
	ents, err := p.entries(dir)
	if err == nil {
		p.lists.Do(func() {
			if slices.ContainsFunc(p.files, func(f opm.File) bool { return f.Chunks != nil }) {
				go p.fs.reg.FetchChunkLists(context.Background(), p.files)
			}
		})
	}
	return ents, err
}

// dirTime is a directory's time: the newest of the files below it
// (docs/design.md §6), the tag's time when none records one.
func (p *pkg) dirTime(dir string) time.Time {
	p.once.Do(p.build)
	if t, ok := p.dirTimes[dir]; ok {
		return t
	}
	return p.mtime
}

// fileTime is a file's time: its own, the tag's when it records none.
func (p *pkg) fileTime(f *opm.File) time.Time {
	if f.ModTime.IsZero() {
		return p.mtime
	}
	return f.ModTime
}

func (p *pkg) build() {
	m := p.manifest
	if m == nil {
		found, err := p.view.Resolve(p.ref)
		if err != nil {
			p.err = err
			p.fs.log.Error("read manifest", "package", p.name, "err", err)
			return
		}
		m, p.digest = found.Manifest, found.Digest
	}
	files := m.Files()
	p.files = files
	p.dirs = map[string][]dirent{"": nil}
	p.dirTimes = map[string]time.Time{}
	added := map[string]bool{"": true} // directories already named in their parent
	bad := 0
	for i := range files {
		f := &files[i]
		if f.BadModTime != "" {
			bad++
		}
		if !f.ModTime.IsZero() {
			for d := f.Path; d != ""; {
				d, _ = splitPath(d)
				if f.ModTime.After(p.dirTimes[d]) {
					p.dirTimes[d] = f.ModTime
				}
			}
		}
		dir, name := splitPath(f.Path)
		p.dirs[dir] = append(p.dirs[dir], dirent{name: name, file: f})
		for d := dir; !added[d]; {
			added[d] = true
			parent, base := splitPath(d)
			p.dirs[parent] = append(p.dirs[parent], dirent{name: base})
			d = parent
		}
	}
	for _, ents := range p.dirs {
		slices.SortFunc(ents, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	}
	if bad > 0 {
		p.fs.log.Warn("file times that cannot be read are shown as the tag's", "package", p.name, "files", bad)
	}
}

// splitPath splits a package path into its directory ("" at the top) and
// base name.
func splitPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// pkgDir is the top of a package or a directory inside it.
type pkgDir struct {
	gofs.Inode
	readOnly
	p     *pkg
	dir   string     // path inside the package; "" is the top
	cover *coverOnce // the top of a live-head tag: asks for its overlay
}

// coverOnce asks for the overlay of a package directory of the live head,
// once: at the first look inside it (a lookup in it, or a listing of it),
// not when it is only looked up or stat'ed — `ls -l` of a repository of
// 10k tags covers none of them.
type coverOnce struct {
	once sync.Once
	ask  func()
}

func (c *coverOnce) do() {
	if c != nil {
		c.once.Do(c.ask)
	}
}

var (
	_ = (gofs.NodeLookuper)((*pkgDir)(nil))
	_ = (gofs.NodeOpendirHandler)((*pkgDir)(nil))
	_ = (gofs.NodeGetattrer)((*pkgDir)(nil))
)

func (d *pkgDir) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.p.dirTime(d.dir))
	out.SetTimeout(immutableTimeout)
	return 0
}

func (d *pkgDir) childPath(name string) string {
	if d.dir == "" {
		return name
	}
	return d.dir + "/" + name
}

func (d *pkgDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.cover.do()
	ents, err := d.p.lookInto(d.dir)
	if err != nil {
		return nil, errno(err)
	}
	i, ok := slices.BinarySearchFunc(ents, name, func(e dirent, name string) int { return strings.Compare(e.name, name) })
	if !ok {
		// A negative entry, cached as long as the go-fuse option
		// NegativeTimeout (immutableTimeout) says: this directory
		// never changes.
		return nil, syscall.ENOENT
	}
	e := ents[i]
	cp := d.childPath(name)
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
	if e.file == nil {
		dirAttr(&out.Attr, d.p.dirTime(cp))
		return d.NewInode(ctx, &pkgDir{p: d.p, dir: cp}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino("pkg", d.p.id, cp)}), 0
	}
	f := &pkgFile{p: d.p, f: e.file}
	f.attr(&out.Attr)
	return d.NewInode(ctx, f, gofs.StableAttr{Mode: f.kind(), Ino: ino("pkg", d.p.id, cp)}), 0
}

// OpendirHandle lists the directory and lets the kernel keep the listing
// (FOPEN_CACHE_DIR): after the first listing, readdir of a package
// directory is answered by the kernel alone.
func (d *pkgDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	d.cover.do()
	ents, err := d.p.lookInto(d.dir)
	if err != nil {
		return nil, 0, errno(err)
	}
	out := make([]fuse.DirEntry, len(ents))
	for i, e := range ents {
		mode := uint32(syscall.S_IFDIR)
		if e.file != nil {
			mode = fileKind(e.file)
		}
		out[i] = fuse.DirEntry{Name: e.name, Mode: mode, Ino: ino("pkg", d.p.id, d.childPath(e.name))}
	}
	return gofs.NewListDirStream(out).(gofs.FileHandle), fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// pkgFile is a regular file or a symbolic link of a package.
type pkgFile struct {
	gofs.Inode
	readOnly
	p *pkg
	f *opm.File
	// seen, for a blob of .opm/blobs, names a file of a package that holds
	// it, for the log.
	seen string
}

// file names the file in the log: its package and path (for a blob of
// .opm/blobs, a package file that holds it, when known).
func (n *pkgFile) file() string {
	if n.seen != "" {
		return n.seen
	}
	return n.p.name + "/" + n.f.Path
}

var (
	_ = (gofs.NodeGetattrer)((*pkgFile)(nil))
	_ = (gofs.NodeOpener)((*pkgFile)(nil))
	_ = (gofs.NodeReadlinker)((*pkgFile)(nil))
	_ = (gofs.NodeGetxattrer)((*pkgFile)(nil))
	_ = (gofs.NodeListxattrer)((*pkgFile)(nil))
)

func (n *pkgFile) kind() uint32 { return fileKind(n.f) }

// fileKind is the file type of a package file: a symbolic link or a
// regular file.
func fileKind(f *opm.File) uint32 {
	if f.Symlink != "" {
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

func (n *pkgFile) attr(a *fuse.Attr) {
	a.Mode = n.kind() | uint32(n.f.Mode.Perm())
	a.Size = uint64(n.f.Size)
	if n.f.Symlink != "" {
		a.Mode = syscall.S_IFLNK | 0o777
		a.Size = uint64(len(n.f.Symlink))
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 1 << 20
	a.Nlink = 1
	t := n.p.fileTime(n.f)
	a.SetTimes(&t, &t, &t)
}

func (n *pkgFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.attr(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (n *pkgFile) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.f.Symlink == "" {
		return nil, syscall.EINVAL
	}
	return []byte(n.f.Symlink), 0
}

// Getxattr offers the blob digest of a regular file as user.opm.digest.
func (n *pkgFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.p.fs.opts.NoXattr {
		return 0, syscall.ENOSYS
	}
	if attr != DigestXattr || n.f.Symlink != "" {
		return 0, syscall.ENODATA
	}
	v := n.f.Digest.String()
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *pkgFile) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if n.p.fs.opts.NoXattr {
		return 0, syscall.ENOSYS
	}
	if n.f.Symlink != "" {
		return 0, 0
	}
	v := DigestXattr + "\x00"
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// openFlags are the flags of every open package file: the kernel keeps
// its pages (a file's content never changes), and close(2) sends no FLUSH
// (there is nothing to flush on a read-only file).
const openFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH

// Open opens the file's blob in the local store, fetching it from the
// registry's bucket first if it is not local. A blob that cannot be fetched
// or fails verification gives EIO for this file alone. A local blob costs
// two system calls: open and fstat.
func (n *pkgFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&(syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.p.fs.opts.NoOpen {
		return nil, 0, syscall.ENOSYS // from now on the kernel opens without asking; see Read
	}
	fsys := n.p.fs
	if fsys.opts.Fresh != nil {
		if err := fsys.opts.Fresh(); err != nil {
			return nil, 0, syscall.ESTALE
		}
	}
	if n.f.Size == 0 {
		return emptyFile{}, openFlags, 0
	}
	b, err := fsys.openBlob(ctx, n.f, n.file())
	if err != nil {
		return nil, 0, syscall.EIO // the name exists; its content cannot be read (logged)
	}
	switch {
	case b.Lazy():
		return &lazyFile{blobFile{b}, n}, openFlags, 0
	case fsys.passthrough:
		return &passthroughFile{blobFile{b}}, openFlags, 0
	}
	return &blobFile{b}, openFlags, 0
}

var (
	_ = (gofs.NodeReader)((*pkgFile)(nil))
	_ = (gofs.NodeFlusher)((*pkgFile)(nil))
)

// Flush answers ENOSYS, after which the kernel sends no FLUSH on close for
// any file. (An opened file asks for none anyway: FOPEN_NOFLUSH; this is
// for files read without an open, Options.NoOpen.)
func (n *pkgFile) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// Read reads an open file, or, with Options.NoOpen (no file handle), the
// blob through the mount's cache of open blob files.
func (n *pkgFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, ok := fh.(gofs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	if off >= n.f.Size || n.f.Symlink != "" {
		return fuse.ReadResultData(nil), 0
	}
	fsys := n.p.fs
	b, err := fsys.fds.acquire(ctx, fsys, n.f, n.file())
	if err != nil {
		return nil, syscall.EIO // the name exists; its content cannot be read (logged)
	}
	defer fsys.fds.release(b)
	if errno := n.ready(ctx, b.blob, off, len(dest)); errno != 0 {
		return nil, errno
	}
	got, err := syscall.Pread(b.blob.Fd(), dest, off)
	if err != nil {
		fsys.ioErrors.Add(1)
		fsys.log.Error("read blob", "file", n.file(), "digest", n.f.Digest, "err", err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// ready makes a range of a lazy blob readable (registry.Blob.Ready): EIO
// when it cannot be (counted and logged). Like the fetch of a whole blob,
// it is not cancelled with the request.
func (n *pkgFile) ready(ctx context.Context, b *registry.Blob, off int64, size int) syscall.Errno {
	if !b.Lazy() {
		return 0
	}
	if err := b.Ready(context.WithoutCancel(ctx), off, int64(size)); err != nil {
		fsys := n.p.fs
		fsys.ioErrors.Add(1)
		fsys.log.Error("read blob chunks", "file", n.file(), "digest", n.f.Digest, "offset", off, "err", err)
		return syscall.EIO
	}
	return 0
}

// openBlob opens the local blob file of f through the registry (which
// fetches it first if it is not local, and checks its size; or, for a big
// file with a chunk list, opens it to be read chunk by chunk). Failures
// are counted and logged.
func (fsys *FS) openBlob(ctx context.Context, f *opm.File, file string) (*registry.Blob, error) {
	start := time.Now()
	// Not cancelled with the request: the kernel interrupts a request for
	// any signal the reader gets (Go programs get SIGURG all the time), and
	// the download is shared by every reader of the blob and worth
	// finishing anyway.
	b, listErr, err := fsys.reg.OpenFileBlob(context.WithoutCancel(ctx), f)
	if listErr != nil {
		fsys.log.Warn("chunk list unusable; reading the whole blob", "file", file, "digest", f.Digest, "err", listErr)
	}
	if err != nil {
		fsys.ioErrors.Add(1)
		fsys.log.Error("open blob", "file", file, "digest", f.Digest, "err", err)
		return nil, err
	}
	switch {
	case b.Lazy():
		fsys.log.Info("reading blob chunk by chunk", "file", file, "digest", f.Digest, "size", f.Size, "took", time.Since(start))
	case b.Fetched():
		fsys.log.Info("fetched blob", "file", file, "digest", f.Digest, "size", f.Size, "took", time.Since(start))
	}
	return b, nil
}

// blobFile reads an open blob file of the local store. It keeps reading
// the blob it opened whatever happens to the tag afterwards.
type blobFile struct {
	blob *registry.Blob
}

var (
	_ = (gofs.FileReader)((*blobFile)(nil))
	_ = (gofs.FileReleaser)((*blobFile)(nil))
)

func (b *blobFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultFd(uintptr(b.blob.Fd()), off, len(dest)), 0
}

func (b *blobFile) Release(ctx context.Context) syscall.Errno {
	b.blob.Close()
	return 0
}

// lazyFile is a blobFile of a blob read chunk by chunk: each read first
// makes its range present (fetched and verified).
type lazyFile struct {
	blobFile
	n *pkgFile
}

func (l *lazyFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if errno := l.n.ready(ctx, l.blob, off, len(dest)); errno != 0 {
		return nil, errno
	}
	return l.blobFile.Read(ctx, dest, off)
}

// passthroughFile is a blobFile the kernel reads directly (FUSE
// passthrough): reads never reach this process.
type passthroughFile struct {
	blobFile
}

var _ = (gofs.FilePassthroughFder)((*passthroughFile)(nil))

func (p *passthroughFile) PassthroughFd() (int, bool) { return p.blob.Fd(), true }

// emptyFile is an open empty file: there is no blob to read.
type emptyFile struct{}

var _ = (gofs.FileReader)(emptyFile{})

func (emptyFile) Read(context.Context, []byte, int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultData(nil), 0
}
