package opmfs

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
)

// Holder is a process that keeps a mount busy, as fuser -m finds them: it
// has files or directories open there, its working directory, root or
// program there, or maps a file from there.
type Holder struct {
	PID     int
	Command string
	Open    int  // descriptors open there
	Mapped  int  // files mapped from there
	Cwd     bool // its working directory is there
	Root    bool // its root directory is there
	Exe     bool // its program is there
}

func (h Holder) uses() int {
	n := h.Open + h.Mapped
	for _, b := range []bool{h.Cwd, h.Root, h.Exe} {
		if b {
			n++
		}
	}
	return n
}

func (h Holder) String() string {
	var what []string
	if h.Open > 0 {
		what = append(what, plural(h.Open, "open file"))
	}
	if h.Mapped > 0 {
		what = append(what, plural(h.Mapped, "mapped file"))
	}
	for _, u := range []struct {
		on   bool
		name string
	}{{h.Cwd, "working directory"}, {h.Root, "root"}, {h.Exe, "program"}} {
		if u.on {
			what = append(what, u.name)
		}
	}
	return fmt.Sprintf("pid %d (%s: %s)", h.PID, h.Command, strings.Join(what, ", "))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// BusyError is an unmount refused because processes use the mount. The
// mount goes on serving.
type BusyError struct {
	Dir     string
	Holders []Holder // busiest first; none found when the kernel alone knows
}

// shownHolders is how many holders a BusyError names.
const shownHolders = 3

func (e *BusyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is busy", e.Dir)
	switch n := len(e.Holders); {
	case n == 0:
		b.WriteString(" (no process was found holding it)")
	default:
		b.WriteString(": used by ")
		for i, h := range e.Holders[:min(n, shownHolders)] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(h.String())
		}
		if n > shownHolders {
			fmt.Fprintf(&b, " and %d more", n-shownHolders)
		}
	}
	b.WriteString("; close them, or detach it now with opm umount --lazy")
	return b.String()
}

func (e *BusyError) Unwrap() error { return opm.ErrBusy }

// mountSet names the mounts a holder may use: by mount ID, device, and
// the path prefix they are mounted under.
type mountSet struct {
	dir  string // the mount point, as the kernel records it
	ids  map[uint64]bool
	devs map[uint64]bool
}

// mountsAt is the mount at dir and every mount below it (the overlays), as
// /proc/self/mountinfo lists them now. Their IDs stay theirs after they are
// detached, so a holder found later is still recognised.
func mountsAt(dir string) (mountSet, error) {
	s := mountSet{dir: resolveMountpoint(dir), ids: map[uint64]bool{}, devs: map[uint64]bool{}}
	all, err := mounts(s.under)
	if err != nil {
		return mountSet{}, err
	}
	for _, m := range all {
		s.ids[m.id] = true
		s.devs[m.dev] = true
	}
	return s, nil
}

func (s mountSet) under(path string) bool {
	return path == s.dir || strings.HasPrefix(path, s.dir+"/")
}

// holders lists the processes other than this one that use a mount of s,
// busiest first. A process that goes away while it is read is left out;
// one this process may not inspect (another user's, without root) is not
// found.
func holders(s mountSet) []Holder {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []Holder
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		h := Holder{PID: pid}
		dir := filepath.Join("/proc", p.Name())
		h.Cwd = s.holds(filepath.Join(dir, "cwd"))
		h.Root = s.holds(filepath.Join(dir, "root"))
		h.Exe = s.holds(filepath.Join(dir, "exe"))
		h.Open = s.openFiles(dir)
		h.Mapped = s.mapped(dir)
		if h.uses() == 0 {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		h.Command = strings.TrimSpace(string(comm))
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Holder) int {
		return cmp.Or(cmp.Compare(b.uses(), a.uses()), cmp.Compare(a.PID, b.PID))
	})
	return out
}

// holds reports whether the magic link (cwd, root, exe) leads into s. The
// statx asks for cached attributes only.
func (s mountSet) holds(link string) bool {
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, link, unix.AT_STATX_DONT_SYNC, unix.STATX_MNT_ID, &st) != nil {
		return false
	}
	return st.Mask&unix.STATX_MNT_ID != 0 && s.ids[st.Mnt_id]
}

// openFiles counts the descriptors of the process at dir open in s, by the
// mount ID its fdinfo gives (nothing is opened or stat'ed through them).
func (s mountSet) openFiles(dir string) int {
	fds, err := os.ReadDir(filepath.Join(dir, "fdinfo"))
	if err != nil {
		return 0
	}
	n := 0
	for _, fd := range fds {
		b, err := os.ReadFile(filepath.Join(dir, "fdinfo", fd.Name()))
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			if v, ok := bytes.CutPrefix(line, []byte("mnt_id:")); ok {
				id, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
				if err == nil && s.ids[id] {
					n++
				}
				break
			}
		}
	}
	return n
}

// mapped counts the files the process at dir maps from s: by the device of
// the mapping, or its path (a file of an overlay shows its own path but the
// device of the blob file behind it).
func (s mountSet) mapped(dir string) int {
	f, err := os.Open(filepath.Join(dir, "maps"))
	if err != nil {
		return 0
	}
	defer f.Close()
	files := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset major:minor inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[4] == "0" {
			continue
		}
		path := strings.Join(fields[5:], " ")
		if dev, ok := parseDev(fields[3]); (ok && s.devs[dev]) || s.under(path) {
			files[path] = true
		}
	}
	return len(files)
}

// parseDev parses a device number as /proc/PID/maps writes it: "major:minor"
// in hexadecimal.
func parseDev(s string) (uint64, bool) {
	a, b, ok := strings.Cut(s, ":")
	major, err1 := strconv.ParseUint(a, 16, 32)
	minor, err2 := strconv.ParseUint(b, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, false
	}
	return unix.Mkdev(uint32(major), uint32(minor)), true
}
