package opmfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/erofs"
	"github.com/openpm/opm/registry"
)

// The kernel read path (docs/mount.md, "Two read paths").
//
// Every package directory of the live head that someone looks into (a
// lookup in it, a listing; not a stat of it: see coverOnce) is, a moment
// later, covered by a read-only overlayfs mount that the kernel serves
// alone: its one lower layer is a metadata tree of the package — an EROFS
// image, or a directory — (for each file an empty inode of the right
// size, mode and time whose xattrs
// trusted.overlay.metacopy and trusted.overlay.redirect name its blob), and
// its data-only layers are the local store's blob files and, behind them,
// this mount's own .opm/blobs/sha256 (a blob that is not local is fetched
// through FUSE on first open; one that is never touches this process). The
// FUSE tree underneath stays what it is: the first look into a package,
// .history, @sha256 directories, and every machine where overlayfs or root
// is missing are served by it.
//
// A tag that moves is a new FUSE directory (a new inode); the watcher's
// invalidation of the old name makes the kernel detach the overlay on it
// (open files keep reading what they opened), and the next lookup asks for
// an overlay on the new directory. A mount is put on the directory opened
// and checked by inode number, so one can never cover a newer package.

// overlays puts kernel overlay mounts on the live head's package
// directories (see above). Its work is done by one goroutine, in the order
// packages are looked up.
type overlays struct {
	fs      *FS
	paths   registry.Paths // of the home: MountMeta (trees), MountTmp (trees being written), MountProbe
	layers  []string       // data-only layers: the local blob files, the mount's .opm/blobs/sha256
	fuseDev uint64         // the FUSE mount's device number
	off     string         // why no package is overlaid; "" when they are
	ext     string         // imageExt where metadata trees are EROFS images, else "" (directories)

	jobs  chan overlayJob
	mu    sync.Mutex
	asked map[string]uint64 // package path -> the directory (inode number) last asked for

	mountMu sync.Mutex // held while mounting, and while the mount is being taken down
	paused  bool       // under mountMu: the mount is being taken down, mount no more

	sizes sync.Map // digest.Digest -> blobFacts: the blobs of the trees written or used

	pending atomic.Int64 // asked for, not yet done
	mounts  atomic.Int64 // overlays mounted since the start
	trees   atomic.Int64 // metadata trees written since the start
	failed  atomic.Int64 // packages left to FUSE after a failure (logged)
}

// overlayJob is a package directory to cover.
type overlayJob struct {
	path string // below the mount: ns/project/repo/tag
	ino  uint64 // of the FUSE directory it must still be
	p    *pkg
}

// startOverlays decides whether packages will be overlaid (see probe) and
// starts the worker that mounts them. The FUSE mount is up.
func startOverlays(fsys *FS) *overlays {
	o := &overlays{fs: fsys, paths: fsys.reg.Paths(), asked: map[string]uint64{},
		layers: []string{fsys.reg.BlobFileTree(), filepath.Join(fsys.mnt, opmDirName, blobsDirName, "sha256")},
		jobs:   make(chan overlayJob, 4096)}
	o.off = o.probe()
	if o.off != "" {
		fsys.log.Info("packages are served by FUSE alone", "overlay", o.off)
		return o
	}
	fsys.watching.Add(1)
	go o.work()
	return o
}

// probe returns why packages cannot be overlaid here, or "": it writes a
// metadata file into the cache (the home's filesystem must take trusted
// xattrs) and has the kernel make an overlay of it with the data layers.
func (o *overlays) probe() string {
	if o.fs.opts.NoOverlay {
		return "turned off"
	}
	if os.Geteuid() != 0 {
		return "needs root (trusted xattrs, mount)"
	}
	var st unix.Stat_t
	if err := unix.Stat(o.fs.mnt, &st); err != nil {
		return err.Error()
	}
	o.fuseDev = st.Dev
	dir := o.paths.MountProbe()
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err.Error()
	}
	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		return err.Error()
	}
	err = unix.Fsetxattr(int(f.Fd()), metacopyXattr, nil, 0)
	f.Close()
	if err != nil {
		return fmt.Sprintf("%s takes no trusted xattrs: %v", dir, err)
	}
	fd, err := o.configure(dir)
	if err != nil {
		return err.Error()
	}
	unix.Close(fd)
	if !o.fs.opts.NoMetaImage {
		if err := o.probeImage(dir); err != nil {
			o.fs.log.Info("metadata trees are directories", "erofs", err)
		} else {
			o.ext = imageExt
		}
	}
	return ""
}

// probeImage has the kernel make an overlay over an EROFS image of one
// metadata file, written in dir.
func (o *overlays) probeImage(dir string) error {
	im := erofs.New(0o755, time.Now())
	if err := im.File("file", 0o644, 1, time.Now(), erofs.Xattr{Name: metacopyXattr}, erofs.Xattr{Name: redirectXattr, Value: []byte("/00/00")}); err != nil {
		return err
	}
	img := filepath.Join(dir, "probe"+imageExt)
	if err := writeImage(img, im); err != nil {
		return err
	}
	fd, err := o.configure(img)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// request asks for the package directory at path (inode ino) to be
// overlaid, unless it was already.
func (o *overlays) request(path string, ino uint64, p *pkg) {
	if o == nil || o.off != "" {
		return
	}
	o.mu.Lock()
	if o.asked[path] == ino {
		o.mu.Unlock()
		return
	}
	o.asked[path] = ino
	o.mu.Unlock()
	o.pending.Add(1)
	select {
	case o.jobs <- overlayJob{path, ino, p}:
	default: // a burst of lookups: the rest stay with FUSE until looked up again
		o.pending.Add(-1)
		o.forget([]string{path})
	}
}

// pause stops mounting overlays, for the FUSE mount is being taken down:
// it waits for a mount in progress, and none is made until resume.
// Packages asked for meanwhile are forgotten, to be asked for again.
func (o *overlays) pause() {
	o.mountMu.Lock()
	o.paused = true
	o.mountMu.Unlock()
}

// resume mounts overlays again: the FUSE mount stays. If the overlays were
// detached meanwhile, every package is forgotten, to be covered again at
// its next look.
func (o *overlays) resume(detached bool) {
	o.mountMu.Lock()
	o.paused = false
	o.mountMu.Unlock()
	if detached {
		o.mu.Lock()
		clear(o.asked)
		o.mu.Unlock()
	}
}

// forget drops what was asked for at these paths and below them: the head
// moved there, the kernel has detached their overlays.
func (o *overlays) forget(paths []string) {
	if o == nil || o.off != "" || len(paths) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for p := range o.asked {
		for _, q := range paths {
			if p == q || strings.HasPrefix(p, q+"/") {
				delete(o.asked, p)
			}
		}
	}
}

func (o *overlays) work() {
	defer o.fs.watching.Done()
	o.prune()
	for {
		select {
		case <-o.fs.stop:
			return
		case j := <-o.jobs:
			if err := o.cover(j); err != nil {
				o.failed.Add(1)
				o.fs.log.Warn("package left to FUSE", "package", j.p.name, "err", err)
			}
			o.pending.Add(-1)
		}
	}
}

// cover mounts the overlay of j's package on its directory, writing the
// package's metadata tree first if the cache has none.
func (o *overlays) cover(j overlayJob) error {
	p := j.p
	p.once.Do(p.build)
	if p.err != nil {
		return p.err
	}
	tree, err := o.treeOf(p)
	if err != nil {
		return err
	}
	return o.mountOn(j, tree)
}

// mountOn mounts the overlay of metadata tree on j's directory, if that is
// still the FUSE directory asked for and the mount is not being taken down.
func (o *overlays) mountOn(j overlayJob, tree string) error {
	// Under mountMu from before the directory is opened: the descriptor
	// on the mount would make its unmount fail (pause).
	o.mountMu.Lock()
	defer o.mountMu.Unlock()
	if o.paused {
		o.forget([]string{j.path})
		return nil
	}
	target, err := unix.Open(filepath.Join(o.fs.mnt, j.path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // gone already: the head moved
	}
	defer unix.Close(target)
	var st unix.Stat_t
	if err := unix.Fstat(target, &st); err != nil {
		return err
	}
	if st.Dev != o.fuseDev || st.Ino != j.ino {
		return nil // covered already, or the tag has moved on
	}
	fd, err := o.configure(tree)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return fmt.Errorf("fsmount: %w%s", err, fsLog(fd))
	}
	defer unix.Close(mfd)
	// Onto the directory checked above: if its name was invalidated
	// since, the kernel refuses (ENOENT) rather than cover a newer one.
	// Counted first, so that .opm/status never shows more mounted now
	// than since the start.
	o.mounts.Add(1)
	if err := unix.MoveMount(mfd, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		o.mounts.Add(-1)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// configure makes an overlay superblock of a metadata tree (a directory,
// or an image it mounts) over the data layers and returns its fs context
// (fsopen(2)), for fsmount.
func (o *overlays) configure(tree string) (int, error) {
	lower := tree
	if strings.HasSuffix(tree, imageExt) {
		mfd, err := erofs.Mount(tree)
		if err != nil {
			return -1, err
		}
		defer unix.Close(mfd) // the overlay keeps the image's mount alive
		lower = fmt.Sprintf("/proc/self/fd/%d", mfd)
	}
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("no overlayfs: %w", err)
	}
	opts := [][2]string{{"lowerdir+", lower}}
	for _, l := range o.layers {
		opts = append(opts, [2]string{"datadir+", l})
	}
	opts = append(opts, [2]string{"metacopy", "on"}, [2]string{"redirect_dir", "follow"})
	for _, kv := range opts {
		if err := unix.FsconfigSetString(fd, kv[0], kv[1]); err != nil {
			err = fmt.Errorf("overlay %s=%s: %w%s", kv[0], kv[1], err, fsLog(fd))
			unix.Close(fd)
			return -1, err
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		err = fmt.Errorf("overlay: %w%s", err, fsLog(fd))
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// fsLog is what the kernel said about a failed fs context, as ": msg".
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 512)
	for range 8 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return ": " + strings.Join(msgs, "; ")
}

// blobFacts is what the FUSE data layer (.opm/blobs) knows of a blob of a
// tree this mount wrote or used: its size, and its chunk list if it has one
// (a file read from there is read chunk by chunk, as in the FUSE tree).
type blobFacts struct {
	size   int64
	chunks *opm.Descriptor
	file   string // a file of a package that holds it, for the log (big files only)
}

// blobFacts returns what a tree this mount wrote or used says of a blob.
func (o *overlays) blobFacts(d digest.Digest) (blobFacts, bool) {
	if o == nil {
		return blobFacts{}, false
	}
	v, ok := o.sizes.Load(d)
	if !ok {
		return blobFacts{}, false
	}
	return v.(blobFacts), true
}

// OverlayStatus is the overlay's part of .opm/status.
type OverlayStatus struct {
	Off      string `json:"off,omitempty"`      // why packages are served by FUSE alone
	Metadata string `json:"metadata,omitempty"` // the form of metadata trees: "erofs" (images) or "directory"
	Mounted  int    `json:"mounted"`            // overlays mounted now
	Mounts   int64  `json:"mounts"`             // overlays mounted since the start
	Pending  int64  `json:"pending"`            // packages waiting for theirs
	Trees    int64  `json:"trees_written"`      // metadata trees written since the start
	Failed   int64  `json:"failed"`             // packages left to FUSE after an error (logged)
	// Opens counts the opens of blob files by other processes that the
	// daemon saw (registry.WatchReads): the overlays' reads, which count
	// for eviction as the daemon's own.
	Opens int64 `json:"blob_opens"`
}

// OverlaysOn reports whether the kernel's overlays serve packages (they
// read blob files without asking this process).
func (fsys *FS) OverlaysOn() bool { return fsys.ovl != nil && fsys.ovl.off == "" }

func (o *overlays) status() OverlayStatus {
	st := OverlayStatus{Off: o.off, Mounts: o.mounts.Load(), Pending: o.pending.Load(),
		Trees: o.trees.Load(), Failed: o.failed.Load(), Opens: o.fs.reg.ReadsSeen()}
	if o.off == "" {
		st.Metadata = "directory"
		if o.ext == imageExt {
			st.Metadata = "erofs"
		}
		mounts, _ := mountsBelow(o.fs.mnt)
		for _, m := range mounts {
			if m.fstype == "overlay" {
				st.Mounted++
			}
		}
	}
	return st
}
