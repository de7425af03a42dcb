package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
)

// TestUmountWhileOverlaysMount: `opm umount` succeeds while someone is
// looking into package after package, so that the daemon is mounting
// overlays as the unmount runs (each one under the FUSE mount made the
// unmount fail with EBUSY).
func TestUmountWhileOverlaysMount(t *testing.T) {
	home := t.TempDir()
	src := opmtest.WriteTree(t, map[string]string{"a": "a\n"})
	opmOK(t, home, nil, "push", "acme/web/site:v0", src)
	const tags = 600
	for i := 1; i <= tags; i++ {
		opmOK(t, home, nil, "tag", "acme/web/site:v0", fmt.Sprintf("acme/web/site:v%d", i))
	}
	mnt := mountDaemon(t, home)
	if st := mountStatus(t, mnt); st.Overlay.Off != "" {
		opmtest.Unavailable(t, "no kernel overlay: %s", st.Overlay.Off)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i = (i + 1) % (tags + 1) {
			select {
			case <-stop:
				return
			default:
				os.ReadDir(filepath.Join(mnt, "acme/web/site", fmt.Sprintf("v%d", i)))
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for st, err := opmfs.ReadStatus(mnt); err == nil && st.Overlay.Mounts < 150; st, err = opmfs.ReadStatus(mnt) {
	}
	opmOK(t, home, nil, "umount", mnt)
	if _, ok := opmfs.MountedHome(mnt); ok {
		t.Error("still mounted after opm umount")
	}
}
