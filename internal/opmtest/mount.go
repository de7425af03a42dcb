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
	// Two quiet reads in a row, in different clock ticks: with no_open
	// the kernel may answer a read of .opm/status from what it read within
	// the same tick, so a quiet read counts only once a later one, a tick
	// on, is quiet too.
	var quietSince time.Time
	Eventually(t, "the overlays of "+mnt+" to settle (none pending)", func() error {
		st := overlayStatus(t, mnt)
		switch {
		case st.Pending != 0:
			quietSince = time.Time{}
			return fmt.Errorf("overlays still pending: %+v", st)
		case quietSince.IsZero():
			quietSince = time.Now()
			return fmt.Errorf("none pending in one read, to be confirmed by a read a clock tick later: %+v", st)
		case time.Since(quietSince) < 10*time.Millisecond:
			return fmt.Errorf("none pending, not yet confirmed a clock tick later: %+v", st)
		}
		return nil
	})
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
