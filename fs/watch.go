package fs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/openpm/opm/gitmeta"
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

// staleEntry is a name the kernel may have cached that the new head changed.
type staleEntry struct {
	parent *gofs.Inode
	name   string
}

// refresh swaps in the head's snapshot if the head moved, then tells the
// kernel to forget the names that changed: a tag whose manifest changed or
// that was added or removed, and a namespace, project or repository that
// appeared or disappeared. Nothing else is invalidated. The notifications
// are sent with no lock held, outside any FUSE callback.
func (fsys *FS) refresh() error {
	old := fsys.cur.Load()
	h, err := fsys.reg.Meta.Head()
	if err != nil || h == old.snap.Commit() {
		return err
	}
	s, err := fsys.reg.Meta.Snapshot(h)
	if err != nil {
		return err
	}
	diff, err := fsys.reg.Meta.Diff(old.snap.Commit(), h)
	if err != nil {
		return err
	}
	fsys.cur.Store(newView(s))
	fsys.headMoves.Add(1)
	stale := fsys.staleEntries(old.snap, s, diff)
	fsys.log.Info("head moved", "from", short(old.snap.Commit()), "to", short(h), "files", len(diff), "invalidated", len(stale))
	for _, e := range stale {
		if errno := e.parent.NotifyEntry(e.name); errno != 0 && errno != syscall.ENOENT {
			fsys.log.Warn("invalidate entry", "name", e.name, "errno", errno)
		}
	}
	return nil
}

func short(h plumbing.Hash) string { return h.String()[:12] }

// staleEntries lists the names to invalidate for the files that differ
// between two snapshots, among the directories the kernel knows (those
// go-fuse has an inode for).
func (fsys *FS) staleEntries(old, cur *gitmeta.Snapshot, diff []gitmeta.DiffEntry) []staleEntry {
	isDir := func(s *gitmeta.Snapshot, p string) bool {
		e, err := s.Stat(p)
		return err == nil && e.Dir
	}
	// Whether a namespace, project or repository appeared or went away,
	// asked once per path however many of its files changed (a sync may
	// bring thousands of tags of one repository).
	moved := map[string]bool{}
	changed := func(p string) bool {
		c, ok := moved[p]
		if !ok {
			c = isDir(old, p) != isDir(cur, p)
			moved[p] = c
		}
		return c
	}
	seen := map[staleEntry]bool{}
	var out []staleEntry
	add := func(parent *gofs.Inode, name string) {
		e := staleEntry{parent, name}
		if parent != nil && !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	for _, d := range diff {
		parts := strings.Split(d.Path, "/")
		node := &fsys.root.Inode
		// ns, project, repo: a name changes only if the directory appeared
		// or went away.
		i := 0
		for ; i < 3 && i < len(parts)-1 && node != nil; i++ {
			p := strings.Join(parts[:i+1], "/")
			if changed(p) {
				add(node, parts[i])
				break
			}
			node = node.GetChild(parts[i])
		}
		if i == 3 && node != nil && len(parts) == 5 && parts[3] == "tags" {
			if tag, ok := strings.CutSuffix(parts[4], ".json"); ok {
				add(node, tag)
			}
		}
	}
	return out
}

// Unmount unmounts dir: umount(2) when allowed (root), else fusermount3 -u.
// With lazy the mount is detached even while in use (MNT_DETACH).
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
	if parent, err := filepath.EvalSymlinks(filepath.Dir(dir)); err == nil {
		dir = filepath.Join(parent, filepath.Base(dir))
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	home, found := "", false
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 || unescapeMountinfo(f[4]) != dir {
			continue
		}
		// The last mount at dir is the one on top.
		home, found = strings.CutPrefix(unescapeMountinfo(g[1]), "opm:")
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
