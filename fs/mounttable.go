package opmfs

import (
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The mount table: this process's mounts as /proc/self/mountinfo lists
// them (read by github.com/moby/sys/mountinfo), and the mounts below an opm
// mount (its overlays).

// mountEntry is one mount of the table, in the fields opm uses.
type mountEntry struct {
	id                    uint64 // the mount ID (statx STATX_MNT_ID, fdinfo mnt_id)
	dev                   uint64 // its device number
	point, fstype, source string // unescaped (\040 is a space)
}

// mounts lists this process's mounts whose mount point keep accepts, in
// the order mounted.
func mounts(keep func(point string) bool) ([]mountEntry, error) {
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !keep(m.Mountpoint), false
	})
	if err != nil {
		return nil, err
	}
	out := make([]mountEntry, 0, len(infos))
	for _, m := range infos {
		out = append(out, mountEntry{
			id:     uint64(m.ID),
			dev:    unix.Mkdev(uint32(m.Major), uint32(m.Minor)),
			point:  m.Mountpoint,
			fstype: m.FSType,
			source: m.Source,
		})
	}
	return out, nil
}

// resolveMountpoint is dir as the kernel records a mount point: with its
// parent's symbolic links resolved (dir itself may be a dead mount).
func resolveMountpoint(dir string) string {
	dir, _ = filepath.Abs(dir)
	if parent, err := filepath.EvalSymlinks(filepath.Dir(dir)); err == nil {
		dir = filepath.Join(parent, filepath.Base(dir))
	}
	return dir
}

// mountsBelow lists the mounts strictly below dir, deepest last.
func mountsBelow(dir string) ([]mountEntry, error) {
	prefix := resolveMountpoint(dir) + "/"
	return mounts(func(point string) bool { return strings.HasPrefix(point, prefix) })
}

// detachBelow detaches every mount below dir (the overlays on package
// directories), so that dir itself can be unmounted: lazily, so that open
// files keep reading.
func detachBelow(dir string) {
	mounts, err := mountsBelow(dir)
	if err != nil {
		return
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i].point, unix.MNT_DETACH)
	}
}
