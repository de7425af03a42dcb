package cas_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
)

// stdoutOf runs fn and returns what it wrote to standard output.
func stdoutOf(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = saved }()
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	fn()
	w.Close()
	return <-out
}

// TestGCSWithoutCredentials: a gs:// bucket with no Google credentials to be
// found is refused at open with one line saying what to set, and nothing is
// printed on standard output (gocloud's opener prints a warning there, into
// the --json output of the command, and goes on with empty credentials);
// with anonymous=true (a public bucket) it opens without them.
func TestGCSWithoutCredentials(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	t.Setenv("STORAGE_EMULATOR_HOST_GRPC", "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing.json"))
	t.Setenv("HOME", t.TempDir())
	ctx := context.Background()
	var err error
	out := stdoutOf(t, func() { _, err = cas.OpenBucket(ctx, "gs://opm-no-creds") })
	if !errors.Is(err, opm.ErrPermission) || !strings.Contains(err.Error(), "bucket gs://opm-no-creds: no Google credentials found") ||
		!strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("open without credentials: %v; want one permission line naming the bucket and what to set", err)
	}
	if out != "" {
		t.Fatalf("open without credentials printed on stdout: %q", out)
	}
	var b *cas.Bucket
	out = stdoutOf(t, func() { b, err = cas.OpenBucket(ctx, "gs://opm-public?anonymous=true") })
	if err != nil {
		t.Fatalf("open of a public bucket without credentials: %v", err)
	}
	b.Close()
	if out != "" {
		t.Fatalf("open of a public bucket printed on stdout: %q", out)
	}
}
