package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

// The program benchmarks read one tree several ways in the same run:
// natively (the tree on disk), through squashfuse over a squashfs image of
// it (what Apptainer and many HPC sites use for read-only images), and
// through opm mounts of it pushed as a package. Each reports, for every way
// but native, its median time as a multiple of native's.

// A side is one way of reading the tree: the directory where it appears.
type side struct{ name, root string }

// mountConfig is one opm mount configuration to measure.
type mountConfig struct {
	name string
	opts opmfs.Options
}

// mountConfigs are the opm configurations the program benchmarks measure:
// the default, and the FUSE tree alone (the fallback where overlayfs is not
// available, or turned off).
//
// OPM_BENCH_KNOBS=1 adds the FUSE tree's tuning knobs (docs/mount.md):
// without passthrough (opm-fuse-plain) and with no-open (opm-fuse-noopen).
func mountConfigs() []mountConfig {
	fuseOnly := opmfs.DefaultOptions()
	fuseOnly.NoOverlay = true
	cs := []mountConfig{{"opm", opmfs.DefaultOptions()}, {"opm-fuse", fuseOnly}}
	if os.Getenv("OPM_BENCH_KNOBS") == "1" {
		plain, noOpen := fuseOnly, fuseOnly
		plain.Passthrough = false
		noOpen.NoOpen = true
		cs = append(cs, mountConfig{"opm-fuse-plain", plain}, mountConfig{"opm-fuse-noopen", noOpen})
	}
	return cs
}

// treeSides pushes tree as bench/<name>/tree:v1 into a fresh home, mounts
// it once per mount configuration, makes and mounts a squashfs image of it,
// and returns the sides, native first, and the home's registry.
func treeSides(b *testing.B, dir, name, tree string) ([]side, *registry.Registry) {
	b.Helper()
	ref := "bench/" + name + "/tree:v1"
	r, mnt := mountHome(b, dir, mountConfigs()[0].opts, func(r *registry.Registry) { pushDir(b, r, ref, tree+"/") })
	if proactiveReclaim() {
		b.Log("this machine pages out page cache that looks cold (DAMON pageout): warm runs are re-warmed just before they are timed")
	}
	sides := []side{{"native", tree}, {"squashfuse", squashfuse(b, dir, tree)}}
	pkg := "bench/" + name + "/tree/v1"
	sides = append(sides, side{mountConfigs()[0].name, filepath.Join(mnt, pkg)})
	for _, c := range mountConfigs()[1:] {
		sides = append(sides, side{c.name, filepath.Join(mountAgain(b, r, dir, c.opts), pkg)})
	}
	for _, s := range sides[2:] {
		waitReadPath(b, s.root)
	}
	return sides, r
}

// proactiveReclaim reports whether a DAMON context is running a pageout
// scheme, which drops page cache it judges cold while memory is free.
func proactiveReclaim() bool {
	states, _ := filepath.Glob("/sys/kernel/mm/damon/admin/kdamonds/*/state")
	for _, st := range states {
		on, _ := os.ReadFile(st)
		actions, _ := filepath.Glob(filepath.Join(filepath.Dir(st), "contexts/*/schemes/*/action"))
		for _, a := range actions {
			act, _ := os.ReadFile(a)
			if strings.TrimSpace(string(on)) == "on" && strings.TrimSpace(string(act)) == "pageout" {
				return true
			}
		}
	}
	return false
}

// mountAgain mounts r (again, with other options) at a new directory in dir.
func mountAgain(b *testing.B, r *registry.Registry, dir string, opts opmfs.Options) string {
	b.Helper()
	mnt := filepath.Join(dir, fmt.Sprintf("mnt-%d", time.Now().UnixNano()))
	if err := os.Mkdir(mnt, 0o755); err != nil {
		b.Fatal(err)
	}
	m, err := opmfs.Mount(r, mnt, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := m.Unmount(false); err != nil {
			m.Unmount(true)
		}
		m.Wait()
	})
	return mnt
}

// waitReadPath looks into a package directory and waits until the mount
// has settled on how it serves it (opmtest.ServedBy: the overlay, where it
// is built, is mounted in the background after the first look), so that
// the rounds measure the steady state.
func waitReadPath(b *testing.B, pkg string) {
	b.Helper()
	mnt := pkg
	for range 4 {
		mnt = filepath.Dir(mnt)
	}
	b.Logf("%s: read path %s", mnt, opmtest.ServedBy(b, mnt, pkg))
}

// squashfuse makes a squashfs image of tree (mksquashfs, its default
// compression) and mounts it with squashfuse; it skips the benchmark where
// either is missing.
func squashfuse(b *testing.B, dir, tree string) string {
	b.Helper()
	for _, p := range []string{"mksquashfs", "squashfuse"} {
		if _, err := exec.LookPath(p); err != nil {
			b.Skipf("%s is not installed (make bench installs it): %v", p, err)
		}
	}
	img := filepath.Join(dir, fmt.Sprintf("tree-%d.squashfs", time.Now().UnixNano()))
	mnt := strings.TrimSuffix(img, ".squashfs") + ".mnt"
	run(b, nil, "mksquashfs", tree, img, "-noappend", "-quiet", "-no-progress")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		b.Fatal(err)
	}
	run(b, nil, "squashfuse", img, mnt)
	b.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) }) // lazily: files may be open still
	return mnt
}

// compareSides times fn on every side, rounds times each, alternating, and
// reports each side's median as a multiple of native's ("<side>-x") and
// native's median in seconds. Before each timed run it runs prep (dropping
// the page cache, say) or, without one, fn itself, untimed: a warm run is
// warm right before it is timed. These machines reclaim page cache that
// looks cold within seconds (DAMON pageout), so a warm-up done once at the
// start would be gone for whichever side waited longest. It returns the
// medians, in the order of sides.
func compareSides(b *testing.B, sides []side, prep func(root string), fn func(root string)) []time.Duration {
	b.Helper()
	times := make([][]time.Duration, len(sides))
	for range rounds {
		for i, s := range sides {
			times[i] = append(times[i], timed(func() {
				if prep != nil {
					prep(s.root)
				} else {
					fn(s.root)
				}
			}, func() { fn(s.root) }))
		}
	}
	medians := make([]time.Duration, len(sides))
	for i := range sides {
		medians[i] = median(times[i])
	}
	native := medians[0]
	b.ReportMetric(native.Seconds(), "native-s")
	var line strings.Builder
	fmt.Fprintf(&line, "native %v %v", native, times[0])
	for i, s := range sides[1:] {
		m := medians[i+1]
		b.ReportMetric(float64(m)/float64(native), s.name+"-x")
		fmt.Fprintf(&line, "; %s %.2fx %v", s.name, float64(m)/float64(native), times[i+1])
	}
	b.Log(line.String())
	return medians
}

// shIn returns fn for compareSides that runs a shell command line in the
// side's root, n times (a run of a few milliseconds is mostly noise).
func shIn(b *testing.B, n int, script string) func(string) {
	return func(root string) {
		for range n {
			sh(b, root, script)
		}
	}
}
