package opmfs

import (
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
	var moved []string // the paths below the mount, for the overlays
	for _, parts := range stale.Nodes {
		moved = append(moved, strings.Join(parts, "/"))
		if parent := below(parts[:len(parts)-1]); parent != nil {
			notify = append(notify, entry{parent, parts[len(parts)-1]})
		}
	}
	for _, ref := range stale.Tags {
		r := ref.Repository
		moved = append(moved, r.Path()+"/"+ref.Tag)
		if parent := below([]string{r.Namespace, r.Project, r.Name}); parent != nil {
			notify = append(notify, entry{parent, ref.Tag})
		}
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
