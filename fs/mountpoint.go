package opmfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/openpm/opm"
)

// Mount-point administration: unmounting a mount point (one whose daemon
// died too), detaching a dead one, and telling what is mounted at one.

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

// CheckMountpoint tells whether dir can be mounted on, before anything is
// mounted: an existing directory (else opm.ErrNotFound or opm.ErrInvalid,
// saying what to do). A dead mount there passes (the daemon detaches it
// first), and so does another mount (the home's lock decides). entries is
// how many entries, at most 1000, the mount will hide: dir's own, not a
// mount's.
func CheckMountpoint(dir string) (entries int, err error) {
	if dead, err := checkMountpoint(dir); err != nil || dead {
		return 0, err
	}
	if _, mounted := MountedHome(dir); mounted {
		return 0, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, nil // the mount says what is wrong
	}
	defer f.Close()
	names, _ := f.Readdirnames(1000)
	return len(names), nil
}

// checkMountpoint is CheckMountpoint without the count: an existing
// directory, or a dead mount (dead).
func checkMountpoint(dir string) (dead bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case Dead(dir):
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, opm.Errorf(opm.ErrNotFound, "mount %s: no such directory; create it first: mkdir -p %s", dir, dir)
	case err != nil:
		return false, fmt.Errorf("mount %s: %w", dir, err)
	case !fi.IsDir():
		return false, opm.Errorf(opm.ErrInvalid, "mount %s: not a directory; opm mounts on an empty directory", dir)
	}
	return false, nil
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
	dir = resolveMountpoint(dir)
	at, err := mounts(func(point string) bool { return point == dir })
	if err != nil || len(at) == 0 {
		return "", false
	}
	// The last mount at dir is the one on top.
	return strings.CutPrefix(at[len(at)-1].source, "opm:")
}
