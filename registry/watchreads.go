package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Reads the daemon does not make (docs/mount.md, "The local cache"): the
// mount's kernel overlays read blob files of the local store directly, so
// those reads never pass through OpenBlob. WatchReads watches the store's
// fan-out directories with fanotify: each open of a blob file by another
// process touches the blob (the LRU order eviction follows) and holds it
// from eviction until the matching close.

// readWatch is the state of WatchReads.
type readWatch struct {
	seen atomic.Int64 // opens by other processes seen
}

// ReadsSeen counts the opens of blob files by other processes that
// WatchReads has seen (the overlays' reads): .opm/status shows it.
func (r *Registry) ReadsSeen() int64 { return r.reads.seen.Load() }

// WatchReads starts watching, and returns stop, which ends the watch and
// lets go of the holds. It needs CAP_SYS_ADMIN (fanotify); without it the
// error says so and reads through the overlays are not counted.
func (r *Registry) WatchReads(log *slog.Logger) (stop func(), err error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fanotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "fanotify")
	tree := r.local.FileTree()
	// Every fan-out directory is marked, made first if it is not there:
	// a blob stored later lands in a marked one.
	for i := range 256 {
		dir := filepath.Join(tree, fmt.Sprintf("%02x", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			f.Close()
			return nil, err
		}
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN|unix.FAN_CLOSE_NOWRITE|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("fanotify mark %s: %w", dir, err)
		}
	}
	held := map[digest.Digest][]func(){}
	done := make(chan struct{})
	go func() {
		defer close(done)
		me := int32(os.Getpid())
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					log.Warn("watching reads of the local store stopped", "err", err)
				}
				return
			}
			for off := 0; off+int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) <= n; {
				m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
				if m.Event_len < uint32(unsafe.Sizeof(unix.FanotifyEventMetadata{})) {
					break
				}
				off += int(m.Event_len)
				if m.Fd < 0 {
					continue // the queue overflowed: some events are lost
				}
				p, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(m.Fd)))
				unix.Close(int(m.Fd))
				if m.Pid == me {
					continue // the daemon's own reads hold and touch already
				}
				d := digest.NewDigestFromEncoded(digest.SHA256, filepath.Base(p))
				if d.Validate() != nil {
					continue
				}
				opened, closed := m.Mask&unix.FAN_OPEN != 0, m.Mask&unix.FAN_CLOSE_NOWRITE != 0
				if opened {
					r.reads.seen.Add(1)
					r.touches.touch(r, d)
				}
				switch {
				case opened && !closed:
					held[d] = append(held[d], r.inuse.hold(d))
				case closed && !opened && len(held[d]) > 0:
					// (Events of one file merge while queued: an open
					// and its close seen together hold nothing.)
					hs := held[d]
					hs[len(hs)-1]()
					if held[d] = hs[:len(hs)-1]; len(held[d]) == 0 {
						delete(held, d)
					}
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.Close()
			<-done
			for _, hs := range held {
				for _, release := range hs {
					release()
				}
			}
		})
	}, nil
}
