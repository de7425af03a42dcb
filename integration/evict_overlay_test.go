package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm/internal/opmtest"
)

// TestOverlayReadsCountForEviction: a blob read only through a kernel
// overlay — the daemon never sees the read itself — counts as recently
// used (it outlives colder blobs under quota pressure) and is not evicted
// while open there (registry.WatchReads, fanotify on the local store).
func TestOverlayReadsCountForEviction(t *testing.T) {
	opmtest.RequireFUSE(t)
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin.git")
	git(t, "init", "-q", "--bare", "--initial-branch=main", origin)
	home := filepath.Join(dir, "home")
	// With a bucket, the local copies may be evicted.
	mustOpm(t, home, "remote", "add", "origin", "--meta", origin, "--blobs", "file://"+filepath.Join(dir, "blobs")+"?create_dir=1")
	names := []string{"a", "b", "c"}
	blob := map[string]string{} // the local file of each package's one file
	for i, n := range names {
		src := pkgDir(t, uint64(100+i), 1, 100<<10)
		b, err := os.ReadFile(filepath.Join(src, "f000.bin"))
		must(t, err)
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		blob[n] = filepath.Join(home, "blobs", "sha256", h[:2], h)
		mustOpm(t, home, "push", "acme/lru/"+n+":v1", src)
	}
	mnt := mountDaemon(t, home)
	if off := mountStatus(t, mnt).Overlay.Off; off != "" {
		opmtest.Unavailable(t, "packages are served by FUSE alone here: %s", off)
	}
	// a, the oldest, is read through its overlay only.
	pkgA := filepath.Join(mnt, "acme/lru/a/v1")
	_, err := os.ReadDir(pkgA)
	must(t, err)
	opmtest.Eventually(t, "an overlay on "+pkgA, func() error {
		info, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(info), "\n") {
			if f := strings.Fields(line); len(f) > 4 && f[4] == pkgA && strings.Contains(line, " - overlay ") {
				return nil
			}
		}
		return errors.New("not mounted yet")
	})
	seen := mountStatus(t, mnt).Overlay.Opens
	_, err = os.ReadFile(filepath.Join(pkgA, "f000.bin"))
	must(t, err)
	opmtest.Eventually(t, "the daemon to see the read through the overlay", func() error {
		if n := mountStatus(t, mnt).Overlay.Opens; n <= seen {
			return fmt.Errorf("%d opens seen", n)
		}
		return nil
	})
	// A quota for two of the three: the least recently used, b, goes.
	mustOpm(t, home, "config", "cache.quota", "250KiB")
	mustOpm(t, home, "cache", "prune")
	for n, want := range map[string]bool{"a": true, "b": false, "c": true} {
		if exists(blob[n]) != want {
			t.Errorf("after prune: the blob of %s is there: %v, want %v", n, !want, want)
		}
	}
	// Open through the overlay, a stays whatever is evicted.
	f, err := os.Open(filepath.Join(pkgA, "f000.bin"))
	must(t, err)
	mustOpm(t, home, "cache", "prune", "--all")
	if !exists(blob["a"]) || exists(blob["c"]) {
		t.Fatalf("prune --all with a open through its overlay: a there %v, c there %v", exists(blob["a"]), exists(blob["c"]))
	}
	must(t, f.Close())
	opmtest.Eventually(t, "a to be evicted once closed", func() error {
		mustOpm(t, home, "cache", "prune", "--all")
		if exists(blob["a"]) {
			return errors.New("still there")
		}
		return nil
	})
}
