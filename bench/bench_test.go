// Package bench holds opm's benchmarks. Each one measures opm and a
// baseline (sha256sum, cp, the native filesystem, …) in the same run, on the
// same data, alternating rounds, and reports the ratio of the medians:
// these machines are noisy, ratios travel better than seconds.
//
//	make bench        # go test -run '^$' -bench . -benchtime 1x ./bench/
package bench

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/openpm/opm/internal/opmtest"
)

// opmBin is the opm binary under test, built by TestMain.
var opmBin string

// rounds is how many times each side runs; the median counts.
const rounds = 3

func TestMain(m *testing.M) { opmtest.MainWithOpm(m, &opmBin) }

// run runs a command and fails the benchmark if it fails.
func run(b *testing.B, env []string, name string, args ...string) {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// timed measures fn; prepare runs before it, untimed.
func timed(prepare, fn func()) time.Duration {
	if prepare != nil {
		prepare()
	}
	start := time.Now()
	fn()
	return time.Since(start)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// compare runs baseline and opm alternately, rounds times each, and reports
// the ratio of their medians as "<unit>" (e.g. "x-sha256sum") plus both
// medians in seconds.
func compare(b *testing.B, unit string, prepBase, base, prepOpm, opm func()) {
	b.Helper()
	var tb, to []time.Duration
	for range rounds {
		tb = append(tb, timed(prepBase, base))
		to = append(to, timed(prepOpm, opm))
	}
	mb, mo := median(tb), median(to)
	b.ReportMetric(float64(mo)/float64(mb), unit)
	b.ReportMetric(mo.Seconds(), "opm-s")
	b.ReportMetric(mb.Seconds(), "base-s")
	b.Logf("opm %v (median of %v), baseline %v (median of %v): %.2fx", mo, to, mb, tb, float64(mo)/float64(mb))
}

// writeRandom writes size pseudo-random bytes to name.
func writeRandom(b *testing.B, name string, size int64, seed uint64) {
	b.Helper()
	if err := opmtest.WriteRandom(name, size, seed); err != nil {
		b.Fatal(err)
	}
}
