// Package opmfs (directory fs/) serves one registry home as a read-only FUSE filesystem:
//
//	<mnt>/
//	├── .opm/status                         JSON: head, blobs cached, fetches, errors, passthrough
//	├── .history/<commit or ≥7-hex prefix>/ the whole registry at that commit (lookup only)
//	└── <ns>/<project>/<repo>/
//	    ├── <tag>/<paths of the package>    files, directories and symlinks of one package
//	    └── @sha256:<hex>/…                 a package by manifest digest (lookup only)
//
// Nodes are made lazily on Lookup and Readdir and forgotten when the kernel
// forgets them; nothing is held per file of the registry. Inode numbers are a
// hash of a node's identity, so they are stable across lookups, remounts and
// head moves:
//
//   - namespace, project and repository directories: the view (the live head,
//     or a commit under .history) and the path. They keep their number when
//     the head moves; their content is read from the current snapshot.
//   - a package directory (a tag or @sha256:…) and everything below it: the
//     repository, the tag (or digest) and the manifest digest, plus the path
//     inside the package. A tag moved to a new digest is a new directory with
//     new numbers, so an open file keeps reading what it opened, and the
//     kernel may cache a package directory's entries and attributes for as
//     long as it likes.
//
// The same blob under two tags is two inodes (their mtimes differ: each is
// the time its tag was set), so without passthrough each has its own page
// cache. With passthrough, reads go to the one blob file in the local store,
// and every tag holding that blob shares its page cache.
package opmfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// Kernel cache lifetimes. Package directories never change (a moved tag is
// a new directory); the lists of namespaces, projects, repositories and tags
// do, and the head watcher tells the kernel when, so the short timeout only
// bounds staleness should a notification be lost.
const (
	immutableTimeout = 24 * time.Hour
	mutableTimeout   = time.Second
)

// DigestXattr is the extended attribute that holds a file's blob digest.
const DigestXattr = "user.opm.digest"

// Options configure a mount.
type Options struct {
	// AllowOther lets every user of the machine read the mount (the kernel
	// checks the permission bits).
	AllowOther bool
	// Passthrough lets the kernel read blob files directly when it supports
	// FUSE passthrough; otherwise reads are served by this process.
	Passthrough bool
	// Poll is how often refs/heads/main is checked for a new head; 0 means
	// 250 ms.
	Poll time.Duration
	// Logger receives fetch failures, head moves and the passthrough probe;
	// nil means slog.Default().
	Logger *slog.Logger
	// NoXattr answers every extended attribute request with ENOSYS, after
	// which the kernel stops asking: `ls -l` (which asks for ACLs and
	// SELinux labels of every file) saves a round trip per file, and
	// user.opm.digest is not offered.
	NoXattr bool
	// NoOpen answers opens with ENOSYS, after which the kernel opens files
	// without asking this process (FUSE no_open): an open costs no round
	// trip, and a warm read is served by the page cache alone (measured:
	// cat of 50k small files several times faster). The price: no
	// passthrough (reads that miss the page cache come to this process),
	// and a blob that is not local is fetched on the first read instead of
	// on open (a failure is EIO from read, not from open).
	NoOpen bool
	// NoOverlay serves every package through FUSE: no kernel overlay
	// mounts on package directories (overlay.go).
	NoOverlay bool
	// Fresh, if set, is asked at each open of a package file: an error
	// (origin's metadata cannot be shown current: opm mount
	// --require-fresh) refuses the open with ESTALE. It needs NoOverlay
	// and not NoOpen, so that every open comes to this process.
	Fresh func() error
	// NoMetaImage writes the overlays' metadata trees as directories even
	// where the kernel mounts EROFS images, the faster form.
	NoMetaImage bool
	// Debug logs every FUSE request.
	Debug bool
}

// DefaultOptions are the options of `opm mount` (docs/mount.md has the
// measurements behind each): the kernel overlay where it is available; in
// the FUSE tree, no-open (warm reads from the page cache, no round trip per
// open: faster than passthrough for small files and as fast for big ones)
// and no extended attributes. Passthrough applies when NoOpen is turned
// off.
func DefaultOptions() Options {
	return Options{NoOpen: true, Passthrough: true, NoXattr: true}
}

// FS is a mounted registry home. It reads the registry through its views
// (registry.View) and its blobs through registry.OpenBlob, never the
// metadata repository or the blob store underneath.
type FS struct {
	reg  *registry.Registry
	opts Options
	log  *slog.Logger
	mnt  string

	cur  atomic.Pointer[registry.View] // the live head
	root *rootDir

	server      *fuse.Server
	passthrough bool // decided once, before the first open

	fds fdCache // open blob files, for reads without an open (NoOpen)

	ovl   *overlays // the kernel read path (overlay.go)
	blobs *pkg      // the files of .opm/blobs (blobdir.go)

	histMu sync.Mutex
	hist   map[registry.Hash]*registry.View // .history views, a few at a time

	ioErrors  atomic.Int64 // opens and reads of blobs that failed with EIO
	headMoves atomic.Int64
	commands  atomic.Int64 // CLI commands served for the daemon (see CountCommand)
	started   time.Time

	stop      chan struct{}
	stopOnce  sync.Once
	unmountMu sync.Mutex // one Unmount at a time
	watching  sync.WaitGroup
}

// tagTime is when the tag was last set, as of the view. A failure is
// logged and gives the zero time.
func (fsys *FS) tagTime(ctx context.Context, v *registry.View, repo opm.Repository, tag string) time.Time {
	m, err := v.TagTimes(ctx, repo)
	if err != nil {
		fsys.log.Error("tag times", "repo", repo.Path(), "err", err)
	}
	return m[tag].When
}

// Mount mounts the registry at dir and starts watching its head. The caller
// keeps r open until Wait returns.
func Mount(r *registry.Registry, dir string, opts Options) (*FS, error) {
	if opts.Poll == 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// go-fuse mounts on a file too, and its error for a missing directory
	// is fusermount's exit code: say what is wrong first.
	if _, err := checkMountpoint(dir); err != nil {
		return nil, err
	}
	fsys := &FS{reg: r, opts: opts, log: opts.Logger, mnt: dir, hist: make(map[registry.Hash]*registry.View),
		started: time.Now(), stop: make(chan struct{})}
	v, err := r.View()
	if err != nil {
		return nil, err
	}
	fsys.cur.Store(v)
	fsys.root = &rootDir{treeDir: treeDir{fs: fsys, key: "live"}}
	fsys.blobs = &pkg{fs: fsys, id: "blobs", name: opmDirName + "/" + blobsDirName, mtime: fsys.started}

	mutable, immutable := mutableTimeout, immutableTimeout
	gopts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:       "opm:" + r.Home(),
			Name:         "opm",
			AllowOther:   opts.AllowOther,
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			DirectMount:  true, // mount(2) as root, fusermount3 otherwise
			// ro: the kernel refuses every write itself (EROFS), and
			// reads through passthrough do not invalidate the cached
			// attributes for atime (a GETATTR after every read).
			// default_permissions: the kernel checks the permission bits
			// (with --allow-other, for every user).
			Options: []string{"ro", "default_permissions"},
			Debug:   opts.Debug,
		},
		EntryTimeout: &mutable,
		AttrTimeout:  &mutable,
		// Names missing from a package directory or a commit stay
		// missing; the live head's directories opt out (see
		// treeDir.Lookup).
		NegativeTimeout: &immutable,
		RootStableAttr:  &gofs.StableAttr{Ino: 1},
	}
	if opts.Debug {
		gopts.Logger = slog.NewLogLogger(fsys.log.Handler(), slog.LevelDebug)
	}
	server, err := gofs.Mount(dir, fsys.root, gopts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	fsys.server = server
	raiseReadahead(dir, fsys.log)
	fsys.passthrough = opts.Passthrough && !opts.NoOpen && probePassthrough(server, r.BlobFileTree())
	fsys.ovl = startOverlays(fsys)
	fsys.log.Info("mounted", "dir", dir, "home", r.Home(), "head", v.Commit().String(),
		"passthrough", fsys.passthrough, "passthrough_asked", opts.Passthrough, "no_open", opts.NoOpen,
		"overlay", fsys.ovl.off == "")
	fsys.watching.Add(1)
	go fsys.watch()
	return fsys, nil
}

// readaheadKB is the kernel readahead asked for the mount's reads that
// come to this process: the kernel starts a FUSE mount at 128 KiB (or what
// INIT negotiated), so a cold sequential read without passthrough would
// come in 128 KiB requests.
const readaheadKB = 1024

// raiseReadahead sets the readahead of the mount's backing device info
// (/sys/class/bdi/<major>:<minor>/read_ahead_kb), where this process may
// (root). Passthrough reads use the blob file's device and are unaffected.
func raiseReadahead(dir string, log *slog.Logger) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return
	}
	major := (st.Dev>>8)&0xfff | (st.Dev>>32)&^0xfff
	minor := st.Dev&0xff | (st.Dev>>12)&^0xff
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	if err := os.WriteFile(p, []byte(fmt.Sprint(readaheadKB)), 0); err != nil {
		log.Debug("readahead not raised", "path", p, "err", err)
	}
}

// probePassthrough reports whether the kernel accepted FUSE passthrough and
// lets this process register a backing file (it needs CAP_SYS_ADMIN). It
// tries with a temporary regular file in dir (the kernel refuses a
// directory), on the filesystem of the blob files.
func probePassthrough(server *fuse.Server, dir string) bool {
	if server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		return false
	}
	f, err := os.CreateTemp(dir, "passthrough-probe-*")
	if err != nil {
		return false
	}
	os.Remove(f.Name())
	defer f.Close()
	id, errno := server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if errno != 0 {
		return false
	}
	server.UnregisterBackingFd(id)
	return true
}

// Passthrough reports whether opened files are read by the kernel directly
// from the blob files.
func (fsys *FS) Passthrough() bool { return fsys.passthrough }

// Dir is the mount point.
func (fsys *FS) Dir() string { return fsys.mnt }

// Wait blocks until the filesystem is unmounted (by Unmount, umount(8) or
// opm umount), then stops the watcher.
func (fsys *FS) Wait() {
	fsys.server.Wait()
	fsys.stopOnce.Do(func() { close(fsys.stop) })
	fsys.watching.Wait()
	fsys.fds.close()
}

// Unmount takes the mount down (docs/mount.md, "Unmounting"): it stops
// covering packages with overlays, then, unless processes use the mount,
// detaches the overlays and unmounts FUSE; Wait then returns. If processes
// use it, it fails with a *BusyError naming them (opm.ErrBusy) and the
// mount goes on serving. With lazy it detaches everything at once, even
// while files are open (MNT_DETACH): they read on until closed, and Wait
// returns after that.
func (fsys *FS) Unmount(lazy bool) error {
	fsys.unmountMu.Lock()
	defer fsys.unmountMu.Unlock()
	o := fsys.ovl
	o.pause()
	if lazy {
		detachBelow(fsys.mnt)
		return Unmount(fsys.mnt, true)
	}
	// Who uses the mount is looked for before anything is detached, so
	// that a refusal leaves it whole; the mount IDs stay valid after.
	set, err := mountsAt(fsys.mnt)
	if err != nil {
		o.resume(false)
		return err
	}
	if hs := holders(set); len(hs) > 0 {
		o.resume(false)
		return &BusyError{Dir: fsys.mnt, Holders: hs}
	}
	detachBelow(fsys.mnt)
	// A path walk in progress holds the mount for an instant: EBUSY with
	// no holder is tried again, a few times, then reported as it is.
	pause := time.Millisecond
	for try := 0; ; try++ {
		err = Unmount(fsys.mnt, false)
		if err == nil {
			return nil
		}
		hs := holders(set)
		if len(hs) > 0 || !errors.Is(err, syscall.EBUSY) || try == unmountTries {
			o.resume(true)
			if len(hs) > 0 || errors.Is(err, syscall.EBUSY) {
				return &BusyError{Dir: fsys.mnt, Holders: hs}
			}
			return err
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// unmountTries is how many times Unmount tries again when the kernel finds
// the mount busy but no process holds it: about 5 s in all.
const unmountTries = 55

// CountCommand counts a CLI command carried out by the daemon serving this
// mount; the count is in the status file.
func (fsys *FS) CountCommand() { fsys.commands.Add(1) }

// historyView returns the view of a commit for .history, keeping a few.
// The commit is read with no lock held; of two lookups racing to make the
// same view, the first stored wins.
func (fsys *FS) historyView(h registry.Hash) (*registry.View, error) {
	fsys.histMu.Lock()
	v := fsys.hist[h]
	fsys.histMu.Unlock()
	if v != nil {
		return v, nil
	}
	v, err := fsys.reg.ViewAt(h)
	if err != nil {
		return nil, err
	}
	fsys.histMu.Lock()
	defer fsys.histMu.Unlock()
	if old := fsys.hist[h]; old != nil {
		return old, nil
	}
	if len(fsys.hist) >= 64 {
		clear(fsys.hist)
	}
	fsys.hist[h] = v
	return v, nil
}

// ino is the inode number of a node identity: a hash of its parts, below
// go-fuse's automatic numbers (2^63) and above the root (1).
//
// It is FNV-1a over the parts, each followed by a NUL, computed inline: it
// runs for every entry of every listing and lookup, and hash/fnv would
// allocate a hasher and a byte slice per part.
func ino(parts ...string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			h = (h ^ uint64(p[i])) * prime64
		}
		h *= prime64 // a NUL byte: h ^ 0 == h
	}
	n := h >> 1
	if n < 2 {
		n += 2
	}
	return n
}

// fail maps an error of the registry to the errno the kernel gets, and
// logs the cause of an EIO, which the kernel's caller never sees.
func (fsys *FS) fail(what string, err error) syscall.Errno {
	e := errno(err)
	if e == syscall.EIO {
		fsys.log.Error(what, "err", err)
	}
	return e
}

// errno maps an error of the registry to the errno the kernel gets: the
// error table's (opm.Kinds).
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return opm.KindOf(err).Errno
}
