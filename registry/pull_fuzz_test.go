package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/internal/opmtest"
)

// fuzzBlobsRegistry is a registry of a local store only (no metadata, no
// bucket) holding opmtest.FuzzBlobs, the blobs of opmtest.FuzzManifest.
func fuzzBlobsRegistry(t testing.TB) *Registry {
	local, err := cas.OpenLocal(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range opmtest.FuzzBlobs {
		if err := local.Put(context.Background(), digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	return &Registry{local: local}
}

// FuzzPullPaths feeds arbitrary packages to pull's checks (opm.ParseManifest,
// as Resolve reads a tag) and, when they are accepted, pulls them for real
// from a local store holding their tiny blobs. An accepted package never
// names an unsafe path, and pulling it creates exactly its files, all inside
// the target directory, with no symbolic link leading out of it; nothing
// beside the target changes.
func FuzzPullPaths(f *testing.F) {
	for _, spec := range opmtest.HostileSpecs {
		f.Add(spec, int64(-1))
	}
	f.Add("a", int64(5)) // a size that is not the blob's
	f.Add("a\nb", int64(1)<<62+1)
	f.Add("x/y\nx/z=>y\nw=>x/z", int64(-1))
	r := fuzzBlobsRegistry(f)
	f.Fuzz(func(t *testing.T, spec string, size int64) {
		body := opmtest.FuzzManifest(spec, size)
		m, err := opm.ParseManifest(body)
		if err != nil {
			if !errors.Is(err, opm.ErrInvalid) {
				t.Fatalf("refused without ErrInvalid: %v", err)
			}
			return
		}
		files := m.Files()
		if err := opmtest.CheckSafeFiles(files); err != nil {
			t.Fatalf("accepted an unsafe package: %v\n%s", err, body)
		}
		parent := t.TempDir()
		outside := filepath.Join(parent, "outside")
		if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(parent, "out")
		_, pullErr := r.writeFiles(context.Background(), files, dir, false, nil)
		checkPulled(t, parent, dir, files, pullErr == nil)
		if pullErr == nil { // again, over the files it wrote
			_, pullErr = r.writeFiles(context.Background(), files, dir, true, nil)
			checkPulled(t, parent, dir, files, pullErr == nil)
			if pullErr != nil {
				t.Fatalf("pull --force over the same package: %v", pullErr)
			}
		}
	})
}

// TestPullNestedNewDirectories: files in two directories below one that is
// not there yet are pulled (the check for links on the way once refused the
// second: it looked into the directory it had found absent).
func TestPullNestedNewDirectories(t *testing.T) {
	r := fuzzBlobsRegistry(t)
	m, err := opm.ParseManifest(opmtest.FuzzManifest("py/a/x.py\npy/b/y.py\npy/b/c/z.py\ntop", -1))
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	if err := os.WriteFile(filepath.Join(parent, "outside"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "out")
	if _, err := r.writeFiles(context.Background(), m.Files(), dir, false, nil); err != nil {
		t.Fatalf("pull: %v", err)
	}
	checkPulled(t, parent, dir, m.Files(), true)
}

// checkPulled checks the tree a pull of files into dir (in parent, beside
// the file "outside") left: nothing but dir and "outside" in parent;
// in dir, only files of the package with their content or link target
// (verbatim), and with ok, all of them.
func checkPulled(t *testing.T, parent, dir string, files []opm.File, ok bool) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "out" && e.Name() != "outside" {
			t.Fatalf("pull created %q beside its target", e.Name())
		}
	}
	if b, err := os.ReadFile(filepath.Join(parent, "outside")); err != nil || string(b) != "keep" {
		t.Fatalf("pull changed a file beside its target: %q, %v", b, err)
	}
	want := map[string]opm.File{}
	for _, f := range files {
		want[f.Path] = f
	}
	found := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return filepath.SkipDir // a refused pull may create nothing
			}
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			t.Fatalf("walked %q outside %q", p, dir)
		}
		if d.IsDir() {
			return nil
		}
		f, isFile := want[filepath.ToSlash(rel)]
		if !isFile {
			t.Fatalf("pull created %q, which is no file of the package", rel)
		}
		found++
		if f.Symlink != "" {
			target, err := os.Readlink(p)
			if err != nil || target != f.Symlink {
				t.Fatalf("%s: link to %q (%v), want %q", rel, target, err, f.Symlink)
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(b) != f.Digest || int64(len(b)) != f.Size {
			t.Fatalf("%s: %d bytes %s, want %d bytes %s", rel, len(b), digest.FromBytes(b), f.Size, f.Digest)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok && found != len(files) {
		t.Fatalf("pull succeeded with %d of %d files", found, len(files))
	}
}

// A pull with one bad file (here a size the manifest lies about) returns
// its error and does not wait on the files still in flight forever.
// (Found by FuzzPullPaths: with files written in parallel, the failure
// cancels the others' context, and a copy started on a cancelled context
// must still return.)
func TestPullOneBadFileReturns(t *testing.T) {
	r := fuzzBlobsRegistry(t)
	spec := "0"
	for i := range 64 {
		spec += fmt.Sprintf("\n1/%d", i)
	}
	m, err := opm.ParseManifest(opmtest.FuzzManifest(spec, -1))
	if err != nil {
		t.Fatal(err)
	}
	// The lie, told after the parse: the first file's blob is named again
	// with its true size, and one digest at two sizes does not parse.
	m.Layers[0].Size = 35
	res := make(chan error, 1)
	go func() {
		_, err := r.writeFiles(context.Background(), m.Files(), filepath.Join(t.TempDir(), "out"), false, nil)
		res <- err
	}()
	select {
	case err := <-res:
		if !errors.Is(err, opm.ErrIntegrity) || !strings.Contains(err.Error(), "the manifest says 35") {
			t.Fatalf("pull: %v, want the size lie refused", err)
		}
	case <-time.After(opmtest.WaitTimeout):
		t.Fatal("pull did not return after a file failed (a copy started on a cancelled context waits forever?)")
	}
}
