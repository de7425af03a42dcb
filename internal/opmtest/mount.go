package opmtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// ServedBy looks into the package directory pkg of the mount at mnt, waits
// until the mount has settled on how it serves it (the kernel overlay of a
// package is mounted in the background after its first lookup), and
// returns "overlay" if one covers pkg now, "fuse" if not.
func ServedBy(t testing.TB, mnt, pkg string) string {
	t.Helper()
	if _, err := os.ReadDir(pkg); err != nil {
		t.Fatal(err)
	}
	// Each read of the status is a clock tick after the look (overlayStatus),
	// so it shows the overlay asked for.
	Eventually(t, "the overlays of "+mnt+" to settle (none pending)", func() error {
		if st := overlayStatus(t, mnt); st.Pending != 0 {
			return fmt.Errorf("overlays still pending: %+v", st)
		}
		return nil
	})
	return servedNow(t, mnt, pkg)
}

// servedNow is "overlay" if an overlay covers pkg now (it is on another
// device than the mount), else "fuse".
func servedNow(t testing.TB, mnt, pkg string) string {
	t.Helper()
	var a, b syscall.Stat_t
	if err := syscall.Stat(mnt, &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(pkg, &b); err != nil {
		t.Fatal(err)
	}
	if a.Dev != b.Dev {
		return "overlay"
	}
	return "fuse"
}

// RequireReadPath fails the test unless pkg is served by want ("overlay"
// or "fuse"; see ServedBy). Where the mount says the overlay is off (no
// root, an old kernel), wanting it is Unavailable.
//
// Wanting the overlay waits for the overlay itself (pkg on a device of its
// own), and for nothing to be pending, so that a caller reading the status
// next sees it settled.
func RequireReadPath(t testing.TB, mnt, pkg, want string) {
	t.Helper()
	if want == "overlay" {
		failed := overlayStatus(t, mnt).Failed
		if _, err := os.ReadDir(pkg); err != nil {
			t.Fatal(err)
		}
		Eventually(t, pkg+" to be covered by its overlay", func() error {
			st := overlayStatus(t, mnt)
			if st.Off != "" {
				Unavailable(t, "no kernel overlay: %s", st.Off)
			}
			if st.Failed > failed {
				t.Fatalf("%s: a package was left to FUSE (overlay status %+v; the daemon's log says why)", pkg, st)
			}
			if got := servedNow(t, mnt, pkg); got != "overlay" {
				return fmt.Errorf("served by %s (overlay status %+v)", got, st)
			}
			if st.Pending != 0 { // settled, for a caller that reads the status next
				return fmt.Errorf("covered, with overlays still pending: %+v", st)
			}
			return nil
		})
		return
	}
	got := ServedBy(t, mnt, pkg)
	if got == want {
		return
	}
	st := overlayStatus(t, mnt)
	if want == "overlay" && st.Off != "" {
		Unavailable(t, "no kernel overlay: %s", st.Off)
	}
	t.Fatalf("%s is served by %s, want %s (overlay status %+v)", pkg, got, want, st)
}

// overlayStatus is the overlay part of the mount's .opm/status (the fields
// of opmfs.OverlayStatus these helpers use; opmfs's own tests use them).
type overlayStatusPart struct {
	Off     string `json:"off"`
	Pending int64  `json:"pending"`
	Mounted int    `json:"mounted"`
	Failed  int64  `json:"failed"`
}

func overlayStatus(t testing.TB, mnt string) overlayStatusPart {
	t.Helper()
	// As opmfs.ReadStatus does (StatusAge; opmfs's own tests use this
	// package, so it cannot be imported here): past the clock tick in
	// which the kernel may answer from the last read.
	time.Sleep(10 * time.Millisecond)
	b, err := os.ReadFile(filepath.Join(mnt, ".opm/status"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Overlay overlayStatusPart `json:"overlay"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s/.opm/status: %v", mnt, err)
	}
	return st.Overlay
}
