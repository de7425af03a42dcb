package gitmeta

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// registryShape is a registry of ns × projects × repos × tags tag files.
type registryShape struct {
	name                      string
	ns, projects, repos, tags int
}

var shapes = []registryShape{
	{"10ns×10proj×10repo×1000tags", 10, 10, 10, 1000},
	{"1ns×1proj×1repo×10000tags", 1, 1, 1, 10000},
}

// manifest is a stand-in for a tag's manifest, about 400 bytes.
func manifest(path string) []byte {
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"artifactType":"application/vnd.opm.package.v1","layers":[{"digest":"sha256:%064x","size":123,`+
		`"annotations":{"org.opencontainers.image.title":%q}}],"annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}`,
		len(path), path)
}

// buildRegistry writes a registry of the given shape as one commit on main in
// one pack, as after git gc. It uses git fast-import: go-git's pack encoder
// takes minutes for 100k objects.
func buildRegistry(tb testing.TB, dir string, sh registryShape) *Repo {
	tb.Helper()
	r, err := Init(dir)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("git", "-C", dir, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(in)
	fmt.Fprintf(w, "commit %s\ncommitter bench <bench@example.com> 0 +0000\ndata 9\nregistry\n", Branch)
	for ns := range sh.ns {
		for proj := range sh.projects {
			for repo := range sh.repos {
				for tag := range sh.tags {
					path := fmt.Sprintf("ns%02d/proj%02d/repo%02d/tags/v1.%d.json", ns, proj, repo, tag)
					data := manifest(path)
					fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", path, len(data), data)
				}
			}
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		tb.Fatal(err)
	}
	return r
}

// pushOne adds one tag to the middle repository of the registry.
func pushOne(b *testing.B, r *Repo, sh registryShape, i int) {
	path := fmt.Sprintf("ns%02d/proj%02d/repo%02d/tags/new-%d.json", sh.ns/2, sh.projects/2, sh.repos/2, i)
	_, committed, err := r.Update(context.Background(), tester, func(*Snapshot) ([]Change, Message, error) {
		return []Change{{Path: path, Data: manifest(path)}}, Message{
			Subject:  "push " + path,
			Trailers: []Trailer{{Key: "Opm-Digest", Value: fmt.Sprintf("sha256:%064x", i)}},
		}, nil
	})
	if err != nil || !committed {
		b.Fatal(committed, err)
	}
}

// BenchmarkUpdate100kTags measures one more tag (commit + fsync + ref
// publish) in a large registry: "warm" with the repository open, "cold"
// opening it for each Update (as a one-shot CLI command would).
func BenchmarkUpdate100kTags(b *testing.B) {
	for _, sh := range shapes {
		b.Run(sh.name, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "meta.git")
			r := buildRegistry(b, dir, sh)
			defer r.Close()
			n := 0               // tags pushed, across the runs of the sub-benchmarks (-count)
			pushOne(b, r, sh, n) // load the pack index once
			b.Run("warm", func(b *testing.B) {
				for b.Loop() {
					n++
					pushOne(b, r, sh, n)
				}
			})
			b.Run("cold", func(b *testing.B) {
				for b.Loop() {
					r, err := Open(dir)
					if err != nil {
						b.Fatal(err)
					}
					n++
					pushOne(b, r, sh, n)
					r.Close()
				}
			})
		})
	}
}

// BenchmarkReadFile100kTags measures reading one tag file of a large registry.
func BenchmarkReadFile100kTags(b *testing.B) {
	for _, sh := range shapes {
		b.Run(sh.name, func(b *testing.B) {
			r := buildRegistry(b, filepath.Join(b.TempDir(), "meta.git"), sh)
			defer r.Close()
			s := snapshot(b, r)
			path := fmt.Sprintf("ns%02d/proj%02d/repo%02d/tags/v1.%d.json", sh.ns/2, sh.projects/2, sh.repos/2, sh.tags/2)
			for b.Loop() {
				if _, err := s.ReadFile(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
