package opmfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/openpm/opm/registry"
)

// watch polls refs/heads/main (one small file read) until the mount stops,
// and swaps in each new head.
func (fsys *FS) watch() {
	defer fsys.watching.Done()
	t := time.NewTicker(fsys.opts.Poll)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-fsys.stop:
			return
		case <-t.C:
		}
		// Log a failure once, not four times a second.
		msg := ""
		if err := fsys.refresh(); err != nil {
			msg = err.Error()
			if msg != lastErr {
				fsys.log.Error("read head", "err", err)
			}
		}
		lastErr = msg
	}
}

// refresh swaps in the head's view if the head moved, then tells the
// kernel to forget the names that changed: a tag whose manifest changed or
// that was added or removed, and a namespace, project or repository that
// appeared or disappeared (layout.StaleNames). Nothing else is
// invalidated, and only names the kernel knows (those go-fuse has an inode
// for) are. The notifications are sent with no lock held, outside any FUSE
// callback.
func (fsys *FS) refresh() error {
	old := fsys.cur.Load()
	h, err := fsys.reg.Head()
	if err != nil || h == old.Commit() {
		return err
	}
	v, err := fsys.reg.ViewAt(h)
	if err != nil {
		return err
	}
	stale, files, err := v.Stale(old)
	if err != nil {
		return err
	}
	fsys.cur.Store(v)
	fsys.headMoves.Add(1)
	type entry struct {
		parent *gofs.Inode
		name   string
	}
	var notify []entry
	root := &fsys.root.Inode
	// below finds the inode of a node the kernel knows, nil if it knows none.
	below := func(parts []string) *gofs.Inode {
		n := root
		for _, p := range parts {
			if n = n.GetChild(p); n == nil {
				return nil
			}
		}
		return n
	}
	for _, parts := range stale.Nodes {
		if parent := below(parts[:len(parts)-1]); parent != nil {
			notify = append(notify, entry{parent, parts[len(parts)-1]})
		}
	}
	for _, ref := range stale.Tags {
		r := ref.Repository
		if parent := below([]string{r.Namespace, r.Project, r.Name}); parent != nil {
			notify = append(notify, entry{parent, ref.Tag})
		}
	}
	var moved []string
	for _, parts := range stale.Nodes {
		moved = append(moved, strings.Join(parts, "/"))
	}
	for _, ref := range stale.Tags {
		r := ref.Repository
		moved = append(moved, r.Path()+"/"+ref.Tag)
	}
	fsys.ovl.forget(moved)
	fsys.log.Info("head moved", "from", short(old.Commit()), "to", short(h), "files", files, "invalidated", len(notify))
	for _, e := range notify {
		if errno := e.parent.NotifyEntry(e.name); errno != 0 && errno != syscall.ENOENT {
			fsys.log.Warn("invalidate entry", "name", e.name, "errno", errno)
		}
	}
	return nil
}

func short(h registry.Hash) string { return h.String()[:12] }

// Unmount unmounts dir once: umount(2) when allowed (root), else
// fusermount3 -u. With lazy the mount is detached even while in use
// (MNT_DETACH). It does not wait for the daemon or retry: opm umount asks
// the daemon, which calls FS.Unmount; this is for a mount whose daemon is
// gone.
func Unmount(dir string, lazy bool) error {
	flags := 0
	if lazy {
		flags = syscall.MNT_DETACH
	}
	err := syscall.Unmount(dir, flags)
	if !errors.Is(err, syscall.EPERM) {
		if err != nil {
			return &os.PathError{Op: "unmount", Path: dir, Err: err}
		}
		return nil
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	for _, prog := range []string{"fusermount3", "fusermount"} {
		if path, lerr := exec.LookPath(prog); lerr == nil {
			out, err := exec.Command(path, append(args, dir)...).CombinedOutput()
			if err != nil {
				return &os.PathError{Op: "unmount", Path: dir, Err: errors.New(strings.TrimSpace(string(out)))}
			}
			return nil
		}
	}
	return &os.PathError{Op: "unmount", Path: dir, Err: err}
}

// UnmountOrphan unmounts an opm mount that no daemon serves (its daemon
// died): the overlays below it, then the mount itself. If processes use it,
// it fails with a *BusyError naming them.
func UnmountOrphan(dir string, lazy bool) error {
	set, _ := mountsAt(dir)
	detachBelow(dir)
	err := Unmount(dir, lazy)
	if errors.Is(err, syscall.EBUSY) {
		return &BusyError{Dir: dir, Holders: holders(set)}
	}
	return err
}

// SameMountpoint reports whether a and b name the same mount point, as the
// kernel records them (MountedHome).
func SameMountpoint(a, b string) bool { return resolveMountpoint(a) == resolveMountpoint(b) }

// CleanStale detaches dir if it is a mount whose server has died, and
// reports whether it was.
func CleanStale(dir string) (bool, error) {
	if !Dead(dir) {
		return false, nil
	}
	return true, Unmount(dir, true)
}

// Dead reports whether dir is a FUSE mount whose server has gone: statfs
// fails with "transport endpoint is not connected". (stat may still
// succeed for a while from the kernel's cached attributes; statfs always
// asks the server.)
func Dead(dir string) bool {
	var st syscall.Statfs_t
	err := syscall.Statfs(dir, &st)
	if err == nil {
		_, err = os.Stat(dir)
	}
	return errors.Is(err, syscall.ENOTCONN)
}

// MountedHome returns the home served at dir, if dir is an opm mount (its
// source in /proc/self/mountinfo is "opm:<home>").
//
// The kernel records a mount point with its symbolic links resolved; so is
// dir's parent here (the mount point itself cannot be resolved: on a dead
// mount it answers ENOTCONN).
func MountedHome(dir string) (string, bool) {
	dir = resolveMountpoint(dir)
	mounts, err := mountinfo()
	if err != nil {
		return "", false
	}
	home, found := "", false
	for _, m := range mounts {
		if m.point == dir {
			// The last mount at dir is the one on top.
			home, found = strings.CutPrefix(m.source, "opm:")
		}
	}
	return home, found
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
