// Package opmtest holds fixtures shared by opm's end-to-end tests and
// benchmarks: building the real binary and making test data.
package opmtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildOpm builds ./cmd/opm (relative to the module root found from dir
// upwards) into a new temporary directory and returns the binary's path and
// a function that removes it.
func BuildOpm() (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "opm-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "opm")
	build := exec.Command("go", "build", "-o", bin, "github.com/openpm/opm/cmd/opm")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// MainWithOpm is a TestMain: it builds opm, sets *bin to the binary, runs
// the tests and exits with their status.
func MainWithOpm(m *testing.M, bin *string) {
	path, cleanup, err := BuildOpm()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building opm:", err)
		os.Exit(1)
	}
	*bin = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// WriteRandom writes size pseudo-random bytes (a stream fixed by seed) to
// name, creating its directory.
func WriteRandom(name string, size int64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(int64(len(buf)), size)
		rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		size -= n
	}
	return f.Close()
}

// WriteTree writes files (slash paths to contents) into a new temporary
// directory and returns it.
func WriteTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// RequireFUSE skips a test where /dev/fuse is missing, and fails it instead
// when OPM_TEST_REQUIRE_FUSE=1 (as in CI).
func RequireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		Unavailable(t, "no FUSE: %v", err)
	}
}

// Unavailable skips a test that needs what this machine lacks (a device, a
// kernel feature, root, a program), and fails it instead when
// OPM_TEST_REQUIRE_FUSE=1 (as in CI, where nothing may be missing).
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("OPM_TEST_REQUIRE_FUSE") == "1" {
		t.Fatalf("OPM_TEST_REQUIRE_FUSE=1 but "+format, args...)
	}
	t.Skipf(format, args...)
}
