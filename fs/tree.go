package opmfs

import (
	"context"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// readOnly refuses every change with EROFS. Every node embeds it: go-fuse
// would let unlink and rmdir succeed silently on a node without them, and
// answer the others with ENOTSUP.
type readOnly struct{}

func (readOnly) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}
func (readOnly) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnly) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnly) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (readOnly) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }
func (readOnly) Rmdir(context.Context, string) syscall.Errno  { return syscall.EROFS }
func (readOnly) Rename(context.Context, string, gofs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}
func (readOnly) Link(context.Context, gofs.InodeEmbedder, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnly) Symlink(context.Context, string, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnly) Setxattr(context.Context, string, []byte, uint32) syscall.Errno {
	return syscall.EROFS
}
func (readOnly) Removexattr(context.Context, string) syscall.Errno { return syscall.EROFS }

var (
	_ = (gofs.NodeSetattrer)(readOnly{})
	_ = (gofs.NodeMkdirer)(readOnly{})
	_ = (gofs.NodeMknoder)(readOnly{})
	_ = (gofs.NodeCreater)(readOnly{})
	_ = (gofs.NodeUnlinker)(readOnly{})
	_ = (gofs.NodeRmdirer)(readOnly{})
	_ = (gofs.NodeRenamer)(readOnly{})
	_ = (gofs.NodeLinker)(readOnly{})
	_ = (gofs.NodeSymlinker)(readOnly{})
	_ = (gofs.NodeSetxattrer)(readOnly{})
	_ = (gofs.NodeRemovexattrer)(readOnly{})
)

// dirAttr fills the attributes of a directory: 0755, as pull makes a
// package's directories (so that rsync -a sees the two as the same); the
// mount is read-only all the same.
func dirAttr(a *fuse.Attr, mtime time.Time) {
	a.Mode = syscall.S_IFDIR | 0o755
	a.Nlink = 1 // "unknown": find must not skip subdirectories by link count
	a.SetTimes(&mtime, &mtime, &mtime)
}

// treeDir is the root, a namespace, a project or a repository directory of
// one view: the live head, or a commit under .history.
type treeDir struct {
	gofs.Inode
	readOnly
	fs    *FS
	fixed *registry.View // nil: the live head
	key   string         // "live", or "history:<name>" for a .history view
	parts []string       // path below the view's root: ns, project, repo
	path  string         // parts joined by "/"
}

var (
	_ = (gofs.NodeLookuper)((*treeDir)(nil))
	_ = (gofs.NodeOpendirHandler)((*treeDir)(nil))
	_ = (gofs.NodeGetattrer)((*treeDir)(nil))
)

func (d *treeDir) view() *registry.View {
	if d.fixed != nil {
		return d.fixed
	}
	return d.fs.cur.Load()
}

// timeout is how long the kernel may trust names and attributes here: a
// commit under .history never changes; the live head does (and the watcher
// says when).
func (d *treeDir) timeout() time.Duration {
	if d.fixed != nil {
		return immutableTimeout
	}
	return mutableTimeout
}

// childPath is the path of a child below the view's root.
func (d *treeDir) childPath(name string) string {
	if d.path == "" {
		return name
	}
	return d.path + "/" + name
}

func (d *treeDir) repo() opm.Repository {
	return opm.Repository{Namespace: d.parts[0], Project: d.parts[1], Name: d.parts[2]}
}

func (d *treeDir) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.view().When())
	out.SetTimeout(d.timeout())
	return 0
}

func (d *treeDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n, e := d.lookup(ctx, name, out)
	if e == syscall.ENOENT && d.fixed == nil {
		// No negative entry for the live head: a name may appear with
		// the next push. (go-fuse caches ENOENT for NegativeTimeout
		// only when no entry timeout is set.)
		out.SetEntryTimeout(mutableTimeout)
	}
	return n, e
}

func (d *treeDir) lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	v := d.view()
	if len(d.parts) == 3 {
		return d.lookupPackage(ctx, v, name, out)
	}
	if !opm.ValidComponent(name) {
		return nil, syscall.ENOENT
	}
	parts := append(d.parts[:len(d.parts):len(d.parts)], name) // a copy: d.parts is shared
	p := d.childPath(name)
	ok, err := v.HasNode(parts)
	if err != nil {
		return nil, d.fs.fail("lookup", err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	dirAttr(&out.Attr, v.When())
	out.SetEntryTimeout(d.timeout())
	out.SetAttrTimeout(d.timeout())
	child := &treeDir{fs: d.fs, fixed: d.fixed, key: d.key, parts: parts, path: p}
	return d.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino("tree", d.key, p)}), 0
}

// lookupPackage finds a tag, or a package by digest (@sha256:<hex>), in a
// repository directory. The directory's time is the newest of its files,
// so its manifest is read here (once per git blob: registry.View keeps it).
func (d *treeDir) lookupPackage(ctx context.Context, v *registry.View, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	repo := d.repo()
	var p *pkg
	if s, ok := strings.CutPrefix(name, "@"); ok {
		dg, err := opm.ParseDigest(s)
		if err != nil {
			return nil, syscall.ENOENT
		}
		ref := opm.Reference{Repository: repo, Digest: dg}
		found, err := v.Resolve(ref)
		if err != nil {
			return nil, d.fs.fail("lookup", err)
		}
		p = &pkg{fs: d.fs, id: d.key + "\x00" + d.path + "\x00" + name, name: ref.String(),
			mtime: createdTime(found.Manifest), manifest: found.Manifest, digest: found.Digest}
	} else {
		if !opm.ValidTag(name) {
			return nil, syscall.ENOENT
		}
		e, err := v.Tag(repo, name)
		if err != nil {
			return nil, d.fs.fail("lookup", err)
		}
		ref := opm.Reference{Repository: repo, Tag: name}
		p = &pkg{fs: d.fs, id: tagID(d.key, d.path, name, e.ID.String()), name: ref.String(),
			mtime: d.fs.tagTime(ctx, v, repo, name), view: v, ref: ref}
	}
	dirAttr(&out.Attr, p.dirTime(""))
	// The name may move to another package (the watcher invalidates it);
	// the directory it names now never changes.
	out.SetEntryTimeout(d.timeout())
	out.SetAttrTimeout(immutableTimeout)
	child := &pkgDir{p: p}
	n := ino("pkg", p.id, "")
	if d.fixed == nil && p.view != nil {
		// A tag of the live head: served by the kernel's overlay once
		// someone looks inside it, where it can be (overlay.go).
		path := d.childPath(name)
		child.cover = &coverOnce{ask: func() { d.fs.ovl.request(path, n, p) }}
	}
	return d.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: n}), 0
}

// tagID is the identity of a tag's package directory: the view, the
// repository's path, the tag and the git blob of its manifest.
func tagID(key, repoPath, tag, blob string) string {
	return key + "\x00" + repoPath + "\x00" + tag + "\x00" + blob
}

// tagIno is ino("pkg", tagID(key, repoPath, tag, blob), ""), the number of
// a tag's package directory, without building the identity: ino ends each
// part with the NUL that tagID puts between them. A listing of a
// repository computes one per tag.
func tagIno(key, repoPath, tag, blob string) uint64 {
	return ino("pkg", key, repoPath, tag, blob, "")
}

// createdTime is a manifest's creation annotation, or the zero time.
func createdTime(m *opm.Manifest) time.Time {
	t, _ := time.Parse(time.RFC3339, m.Annotations[opm.AnnotationCreated])
	return t
}

// OpendirHandle lists the directory. The kernel may keep the listing of a
// commit under .history, which never changes; the live head's is asked for
// at every opendir.
func (d *treeDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	ents, err := d.entries(d.view())
	if err != nil {
		return nil, 0, d.fs.fail("list", err)
	}
	if len(d.parts) == 3 {
		// A repository: READDIRPLUS gives names only (see tagList).
		fh, flags, e := dirHandle(ents, d.fixed != nil)
		return tagList{fh.(dirStream)}, flags, e
	}
	return dirHandle(ents, d.fixed != nil)
}

// dirStream is what go-fuse's list stream offers as an open directory.
type dirStream interface {
	gofs.FileReaddirenter
	gofs.FileSeekdirer
	gofs.FileReleasedirer
}

// tagList is an open repository directory. Listing it gives the tag names
// without looking each one up: a tag's attributes include when it was set,
// which takes a walk down the repository's history, and plain `ls` of
// 10,000 tags should not pay for it. (READDIRPLUS entries without a node
// are taken by the kernel as names only; ls -l, stat or cd look the tags up.)
type tagList struct {
	dirStream
}

var _ = (gofs.FileLookuper)(tagList{})

func (tagList) Lookup(context.Context, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.ENOENT
}

// dirHandle is an open directory listing ents; with cache the kernel keeps
// the listing (FOPEN_CACHE_DIR).
func dirHandle(ents []fuse.DirEntry, cache bool) (gofs.FileHandle, uint32, syscall.Errno) {
	var flags uint32
	if cache {
		flags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	}
	return gofs.NewListDirStream(ents).(gofs.FileHandle), flags, 0
}

// entries lists the directory in a view: child names above a repository,
// tags in one.
func (d *treeDir) entries(v *registry.View) ([]fuse.DirEntry, error) {
	if len(d.parts) == 3 {
		tags, err := v.Tags(d.repo())
		if err != nil {
			return nil, err
		}
		out := make([]fuse.DirEntry, len(tags))
		for i, t := range tags {
			out[i] = fuse.DirEntry{Name: t.Tag, Mode: syscall.S_IFDIR, Ino: tagIno(d.key, d.path, t.Tag, t.ID.String())}
		}
		return out, nil
	}
	names, err := v.Children(d.parts)
	if err != nil {
		return nil, err
	}
	out := make([]fuse.DirEntry, len(names))
	for i, n := range names {
		out[i] = fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR, Ino: ino("tree", d.key, d.childPath(n))}
	}
	return out, nil
}

// rootDir is the mount's root: the live head's namespaces, plus .opm and
// .history.
type rootDir struct {
	treeDir
}

var (
	_ = (gofs.NodeLookuper)((*rootDir)(nil))
	_ = (gofs.NodeOpendirHandler)((*rootDir)(nil))
)

const (
	opmDirName     = ".opm"
	historyDirName = ".history"
)

func (r *rootDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	var child gofs.InodeEmbedder
	switch name {
	case opmDirName:
		child = &opmDir{fs: r.fs}
	case historyDirName:
		child = &historyDir{lookupOnly{fs: r.fs}}
	default:
		return r.treeDir.Lookup(ctx, name, out)
	}
	dirAttr(&out.Attr, r.fs.started)
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
	return r.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino("special", name)}), 0
}

func (r *rootDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	ents, err := r.entries(r.view())
	if err != nil {
		return nil, 0, r.fs.fail("list", err)
	}
	special := []fuse.DirEntry{
		{Name: historyDirName, Mode: syscall.S_IFDIR, Ino: ino("special", historyDirName)},
		{Name: opmDirName, Mode: syscall.S_IFDIR, Ino: ino("special", opmDirName)},
	}
	return dirHandle(append(special, ents...), false)
}

// historyDir is .history: each commit (full hash or a unique prefix of at
// least 7 hex digits) is the root of the registry as it was then. It lists
// nothing.
type historyDir struct{ lookupOnly }

var _ = (gofs.NodeLookuper)((*historyDir)(nil))

// lookupOnly is a directory whose names are found by lookup alone
// (.history, .opm/blobs): it lists nothing, and has the mount's start time.
type lookupOnly struct {
	gofs.Inode
	readOnly
	fs *FS
}

var (
	_ = (gofs.NodeReaddirer)((*lookupOnly)(nil))
	_ = (gofs.NodeGetattrer)((*lookupOnly)(nil))
)

func (d *lookupOnly) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.fs.started)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (d *lookupOnly) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return gofs.NewListDirStream(nil), 0
}

func (h *historyDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	c, err := h.fs.reg.ResolveCommit(name)
	if err != nil {
		out.SetEntryTimeout(mutableTimeout) // no negative entry: a sync may bring the commit
		return nil, h.fs.fail("lookup", err)
	}
	v, err := h.fs.historyView(c)
	if err != nil {
		return nil, h.fs.fail("lookup", err)
	}
	dirAttr(&out.Attr, v.When())
	out.SetEntryTimeout(mutableTimeout) // a prefix may become ambiguous
	out.SetAttrTimeout(immutableTimeout)
	key := "history:" + name
	child := &treeDir{fs: h.fs, fixed: v, key: key}
	return h.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino("tree", key, "")}), 0
}
