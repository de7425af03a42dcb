package opmfs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The mount table: this process's mounts as /proc/self/mountinfo lists
// them, and the mounts below an opm mount (its overlays).

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	id                    uint64 // the mount ID (statx STATX_MNT_ID, fdinfo mnt_id)
	dev                   uint64 // its device number
	point, fstype, source string
}

// mountinfo lists this process's mounts, in the order mounted.
func mountinfo() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []mountEntry
	for _, line := range bytes.Split(b, []byte("\n")) {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(string(line), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		e := mountEntry{point: unescapeMountinfo(f[4]), fstype: g[0], source: unescapeMountinfo(g[1])}
		e.dev, _ = parseDev(f[2], 10)
		e.id, _ = strconv.ParseUint(f[0], 10, 64)
		out = append(out, e)
	}
	return out, nil
}

// parseDev parses a device number written "major:minor" in base (10 in
// mountinfo, 16 in /proc/PID/maps).
func parseDev(s string, base int) (uint64, bool) {
	a, b, ok := strings.Cut(s, ":")
	major, err1 := strconv.ParseUint(a, base, 32)
	minor, err2 := strconv.ParseUint(b, base, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, false
	}
	return unix.Mkdev(uint32(major), uint32(minor)), true
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
	all, err := mountinfo()
	if err != nil {
		return nil, err
	}
	prefix := resolveMountpoint(dir) + "/"
	var out []mountEntry
	for _, m := range all {
		if strings.HasPrefix(m.point, prefix) {
			out = append(out, m)
		}
	}
	return out, nil
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
