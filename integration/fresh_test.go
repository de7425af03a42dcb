package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/openpm/opm/internal/opmtest"
)

// TestFreshness: a publisher promises its metadata current until a time
// (opm timestamp); once that passes without a new one — a frozen origin
// serving its old, validly signed state, or one that is gone — its readers
// are stale: opm sync exits 11, opm status and the mount's status say so;
// a new timestamp makes them current again.
func TestFreshness(t *testing.T) {
	opmtest.RequireFUSE(t)
	dir := t.TempDir()
	key, _ := sshKey(t, dir, "ci")
	origin := filepath.Join(dir, "origin.git")
	git(t, "init", "-q", "--bare", "--initial-branch=main", origin)
	blobs := "file://" + filepath.Join(dir, "blobs") + "?create_dir=1"
	pub, reader := filepath.Join(dir, "pub"), filepath.Join(dir, "reader")
	for _, home := range []string{pub, reader} {
		mustOpm(t, home, "remote", "add", "origin", "--meta", origin, "--blobs", blobs)
	}
	mustOpm(t, pub, "config", "signing-key", key)
	mustOpm(t, pub, "signers", "add", "ci@example.org", key+".pub")
	mustOpm(t, pub, "push", "acme/web/site:v1", pkgDir(t, 96, 1, 100))
	mustOpm(t, pub, "timestamp", "--expires", "1h")
	if r := mustOpm(t, reader, "sync"); !strings.Contains(r.stderr, "current until") {
		t.Fatalf("a sync of a timestamped origin: %s", r.stderr)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() { unmountAndWait(t, reader, mnt) })
	opmOK(t, reader, nil, "mount", "--daemon", "--sync-interval", "100ms", "--require-fresh", mnt)
	file := filepath.Join(mnt, "acme/web/site/v1/f000.bin")
	if _, err := os.ReadFile(file); err != nil {
		t.Fatalf("a current mount with --require-fresh: %v", err)
	}

	// The last promise runs out, and nothing renews it.
	mustOpm(t, pub, "timestamp", "--expires", "1s")
	opmtest.Eventually(t, "opm sync to say origin is stale", func() error {
		r := syncOpm(t, reader, "sync")
		if r.code != 11 || !strings.Contains(r.stderr, "origin's metadata is stale: its timestamp expired at") {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	if r := syncOpm(t, reader, "fsck", "--remote", "origin"); r.code != 8 || !strings.Contains(r.stdout+r.stderr, "stale") {
		t.Fatalf("opm fsck --remote of a stale origin: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if r := mustOpm(t, reader, "status"); !strings.Contains(r.stdout, "STALE") {
		t.Fatalf("opm status of a stale reader:\n%s", r.stdout)
	}
	opmtest.Eventually(t, "the mount's status to say stale", func() error {
		st := mountStatus(t, mnt)
		for _, s := range st.Trust {
			if s.Remote == "origin" && s.Stale {
				return nil
			}
		}
		return errors.New("not stale")
	})
	// --require-fresh: the mount shows what it has, and refuses to open it.
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(file); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("an open in a stale mount with --require-fresh: %v, want ESTALE", err)
	}
	// A new timestamp: current again.
	mustOpm(t, pub, "timestamp")
	if r := syncOpm(t, reader, "sync"); r.code != 0 {
		t.Fatalf("a sync after a new timestamp: exit %d: %s", r.code, r.stderr)
	}
	if _, err := os.ReadFile(file); err != nil {
		t.Fatalf("an open once current again: %v", err)
	}
}
