package opmfs

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/erofs"
	"github.com/openpm/opm/registry"
)

// A package's metadata tree is the lower layer of its overlay (overlay.go):
// written once into the home's mount cache (registry.Paths: MountMeta, by
// treeKey; MountTmp while being written), as an EROFS image where the kernel
// mounts one, else as a directory of sparse files; prune removes old ones.

// Overlay xattrs of a metadata tree's files (Documentation/filesystems/
// overlayfs.rst: "Metadata only copy up", "Data-only lower layers").
const (
	metacopyXattr = "trusted.overlay.metacopy"
	redirectXattr = "trusted.overlay.redirect"
)

// treeFormat names the format of metadata trees in their cache keys; a
// change to what a tree holds changes it.
const treeFormat = "v1"

// imageExt ends the name of a metadata tree written as an EROFS image, the
// form used where the kernel mounts one from a file: smaller, written in
// one go, and faster to stat and list than the same tree as a directory.
const imageExt = ".erofs"

// treeMaxAge is how long a metadata tree is kept after it was written; older
// ones are removed when a mount starts (and written again when needed).
const treeMaxAge = 30 * 24 * time.Hour

// treeKey names a package's metadata tree in the cache: the manifest
// digest, plus what else shapes the tree: the tag's time when a file
// records none (packages pushed before file times), and the digest xattr.
func treeKey(p *pkg, digestXattr bool) string {
	key := treeFormat + "-" + p.digest.Encoded()
	if slices.ContainsFunc(p.files, func(f opm.File) bool { return f.ModTime.IsZero() }) {
		key += fmt.Sprintf("-t%d", p.mtime.UnixNano())
	}
	if digestXattr {
		key += "-x"
	}
	return key
}

// treeOf is the path of p's metadata tree in the cache, written first if
// the cache has none. The sizes and chunk lists of its blobs are kept for
// the FUSE data layer (blobFacts).
func (o *overlays) treeOf(p *pkg) (string, error) {
	tree := filepath.Join(o.paths.MountMeta(), treeKey(p, !o.fs.opts.NoXattr)+o.ext)
	if _, err := os.Lstat(tree); errors.Is(err, fs.ErrNotExist) {
		if err := o.write(tree, p); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	for i := range p.files {
		if f := &p.files[i]; f.Symlink == "" && f.Size > 0 {
			facts := blobFacts{size: f.Size, chunks: f.Chunks}
			if f.Chunks != nil { // read chunk by chunk: a failed read names the file
				facts.file = p.name + "/" + f.Path
			}
			o.sizes.Store(f.Digest, facts)
		}
	}
	return tree, nil
}

// write writes p's metadata tree at tree: into a temporary directory of the
// cache, flushed to disk (syncfs), then renamed into place, so that a tree
// in place is whole.
func (o *overlays) write(tree string, p *pkg) error {
	start := time.Now()
	tmp := filepath.Join(o.paths.MountTmp(), fmt.Sprintf("%s.%d.%d", filepath.Base(tree), os.Getpid(), start.UnixNano()))
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(tree), 0o755); err != nil {
		return err
	}
	var err error
	if o.ext == imageExt {
		err = writeMetaImage(tmp, p, !o.fs.opts.NoXattr)
	} else if err = writeMetaTree(tmp, p, !o.fs.opts.NoXattr); err == nil {
		err = syncfs(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, tree)
		if errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
			err = nil // written by another, as it happens
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("write metadata tree: %w", err)
	}
	o.trees.Add(1)
	o.fs.log.Info("wrote metadata tree", "package", p.name, "files", len(p.files), "took", time.Since(start))
	return nil
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// writeMetaTree writes the metadata tree of p into dir, which must not
// exist: p's directories (0755, their time the newest below them), its
// symbolic links verbatim, and for each regular file a sparse file of its
// size, mode and time whose overlay xattrs redirect to its blob (an empty
// file needs none). With digestXattr files carry user.opm.digest too. Every
// name is made relative to its directory's descriptor, resolved beneath
// dir without following links.
func writeMetaTree(dir string, p *pkg, digestXattr bool) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	dirs := slices.Sorted(maps.Keys(p.dirs)) // a parent before its children
	for _, d := range dirs {
		if err := writeMetaDir(root, d, p, digestXattr); err != nil {
			return err
		}
	}
	// Times last: making a name changes its directory's.
	for _, d := range dirs {
		name := d
		if d == "" {
			name = "."
		}
		if err := unix.UtimesNanoAt(root, name, timespecs(p.dirTime(d)), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	return nil
}

// writeMetaDir makes the children of package directory d (made already).
func writeMetaDir(root int, d string, p *pkg, digestXattr bool) error {
	fd := root
	if d != "" {
		var err error
		fd, err = unix.Openat2(root, d, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		defer unix.Close(fd)
	}
	for _, e := range p.dirs[d] {
		var err error
		switch f := e.file; {
		case f == nil:
			err = unix.Mkdirat(fd, e.name, 0o755)
			if err == nil {
				err = unix.Fchmodat(fd, e.name, 0o755, 0) // not the umask's
			}
		case f.Symlink != "":
			err = unix.Symlinkat(f.Symlink, fd, e.name)
		default:
			err = writeMetaFile(fd, e.name, f, digestXattr)
		}
		if err == nil && e.file != nil {
			err = unix.UtimesNanoAt(fd, e.name, timespecs(p.fileTime(e.file)), unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", pathJoin(d, e.name), err)
		}
	}
	return nil
}

func writeMetaFile(dir int, name string, f *opm.File, digestXattr bool) error {
	xattrs, err := metaXattrs(f, digestXattr)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, f.Size); err != nil {
		return err
	}
	for _, x := range xattrs {
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			return err
		}
	}
	return unix.Fchmod(fd, uint32(f.Mode.Perm()))
}

// metaXattrs are the xattrs of regular file f in a metadata tree: the
// overlay's, redirecting to its blob (an empty file needs none), and with
// digestXattr user.opm.digest.
func metaXattrs(f *opm.File, digestXattr bool) ([]erofs.Xattr, error) {
	var xs []erofs.Xattr
	if f.Size > 0 {
		if _, err := opm.ParseDigest(string(f.Digest)); err != nil {
			return nil, err
		}
		xs = append(xs, erofs.Xattr{Name: metacopyXattr},
			erofs.Xattr{Name: redirectXattr, Value: []byte("/" + registry.BlobFilePath(f.Digest))})
	}
	if digestXattr && f.Digest != "" {
		xs = append(xs, erofs.Xattr{Name: DigestXattr, Value: []byte(f.Digest.String())})
	}
	return xs, nil
}

// writeMetaImage writes the metadata tree of p, as writeMetaTree does, as
// an EROFS image at file (synced), which must not exist.
func writeMetaImage(file string, p *pkg, digestXattr bool) error {
	im := erofs.New(0o755, p.dirTime(""))
	for _, d := range slices.Sorted(maps.Keys(p.dirs)) { // a parent before its children
		for _, e := range p.dirs[d] {
			name := pathJoin(d, e.name)
			var err error
			switch f := e.file; {
			case f == nil:
				err = im.Dir(name, 0o755, p.dirTime(name))
			case f.Symlink != "":
				err = im.Symlink(name, f.Symlink, p.fileTime(f))
			default:
				var xs []erofs.Xattr
				if xs, err = metaXattrs(f, digestXattr); err == nil {
					err = im.File(name, uint32(f.Mode.Perm()), f.Size, p.fileTime(f), xs...)
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return writeImage(file, im)
}

// writeImage writes im to file, which must not exist, and syncs it.
func writeImage(file string, im *erofs.Image) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = im.WriteTo(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func pathJoin(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// timespecs is t for utimensat (access and modification), not before 1970.
func timespecs(t time.Time) []unix.Timespec {
	ts := unix.Timespec{}
	if t.After(time.Unix(0, 0)) {
		ts = unix.NsecToTimespec(t.UnixNano())
	}
	return []unix.Timespec{ts, ts}
}

// prune removes the trees being written by a mount that died, and the trees
// older than treeMaxAge (by their change time: when they were written).
func (o *overlays) prune() {
	os.RemoveAll(o.paths.MountTmp())
	meta := o.paths.MountMeta()
	ents, err := os.ReadDir(meta)
	if err != nil {
		return
	}
	for _, e := range ents {
		var st unix.Stat_t
		p := filepath.Join(meta, e.Name())
		if unix.Lstat(p, &st) == nil && time.Since(time.Unix(st.Ctim.Unix())) > treeMaxAge {
			os.RemoveAll(p)
		}
	}
}
