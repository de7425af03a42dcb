package opmtest

import (
	"encoding/json"
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
	// Two quiet reads in a row: with no_open the kernel may answer a read
	// of .opm/status from what it read within the same clock tick.
	quiet := 0
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		st := overlayStatus(t, mnt)
		if st.Pending != 0 {
			quiet = 0
		} else if quiet++; quiet == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: overlays still pending after a minute: %+v", mnt, st)
		}
	}
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
func RequireReadPath(t testing.TB, mnt, pkg, want string) {
	t.Helper()
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
