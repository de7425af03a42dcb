package opmfs

import (
	"errors"
	"strings"
	"testing"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/opmtest"
)

// FuzzMountTree feeds arbitrary packages to the mount's directory index
// (what Lookup and Opendir serve inside a package): whatever a manifest
// holds, a package the mount accepts shows only names that are plain
// directory entries, each once, sorted, and exactly the manifest's files,
// with no path that could leave the package.
func FuzzMountTree(f *testing.F) {
	for _, spec := range opmtest.HostileSpecs {
		f.Add(spec, int64(-1))
	}
	f.Add("a", int64(-1))
	f.Add("a\nb", int64(1)<<62+1)
	f.Add("a\nb", int64(1)<<62)
	f.Add("a\nb\nc", int64(-7))
	f.Fuzz(func(t *testing.T, spec string, size int64) {
		body := opmtest.FuzzManifest(spec, size)
		m, err := opm.ParseManifest(body) // as pkg.build reads a tag's manifest
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
		p := &pkg{name: "fuzz/fuzz/fuzz:fuzz", manifest: m}
		shown := map[string]bool{}
		dirs := 0
		var walk func(dir string)
		walk = func(dir string) {
			dirs++
			ents, err := p.entries(dir)
			if err != nil {
				t.Fatalf("%q: %v", dir, err)
			}
			for i, e := range ents {
				if e.name == "" || e.name == "." || e.name == ".." || strings.ContainsAny(e.name, "/\\\x00") {
					t.Fatalf("directory %q shows the name %q", dir, e.name)
				}
				if i > 0 && ents[i-1].name >= e.name {
					t.Fatalf("directory %q: %q then %q (unsorted or twice)", dir, ents[i-1].name, e.name)
				}
				child := e.name
				if dir != "" {
					child = dir + "/" + e.name
				}
				if e.file == nil {
					walk(child)
					continue
				}
				if e.file.Path != child {
					t.Fatalf("file %q shown at %q", e.file.Path, child)
				}
				if _, isDir := p.dirs[child]; isDir {
					t.Fatalf("%q is shown as a file and has a directory index", child)
				}
				shown[child] = true
			}
		}
		walk("")
		if len(shown) != len(files) {
			t.Fatalf("the mount shows %d files, the manifest has %d", len(shown), len(files))
		}
		if dirs != len(p.dirs) {
			t.Fatalf("%d directories reachable, %d indexed", dirs, len(p.dirs))
		}
	})
}
