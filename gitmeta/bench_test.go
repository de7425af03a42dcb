package gitmeta

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
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

// buildRegistry writes a registry of the given shape, as one pack (as after
// git gc) with one commit on main, straight with plumbing.
func buildRegistry(tb testing.TB, dir string, sh registryShape) *Repo {
	tb.Helper()
	r, err := Init(dir)
	if err != nil {
		tb.Fatal(err)
	}
	mem := memory.NewStorage()
	var hashes []plumbing.Hash
	write := func(t plumbing.ObjectType, data []byte) plumbing.Hash {
		o := &plumbing.MemoryObject{}
		o.SetType(t)
		o.Write(data)
		h, err := mem.SetEncodedObject(o)
		if err != nil {
			tb.Fatal(err)
		}
		hashes = append(hashes, h)
		return h
	}
	tree := func(entries []object.TreeEntry) plumbing.Hash {
		slices.SortFunc(entries, func(a, b object.TreeEntry) int { return compareEntries(&a, &b) })
		return write(plumbing.TreeObject, encodeTree(entries))
	}
	level := func(prefix string, n int, kid func(name string) plumbing.Hash) plumbing.Hash {
		entries := make([]object.TreeEntry, n)
		for i := range entries {
			name := fmt.Sprintf("%s%02d", prefix, i)
			entries[i] = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: kid(name)}
		}
		return tree(entries)
	}
	root := level("ns", sh.ns, func(ns string) plumbing.Hash {
		return level("proj", sh.projects, func(proj string) plumbing.Hash {
			return level("repo", sh.repos, func(repo string) plumbing.Hash {
				tags := make([]object.TreeEntry, sh.tags)
				for i := range tags {
					name := fmt.Sprintf("v1.%d.json", i)
					data := manifest(strings.Join([]string{ns, proj, repo, name}, "/"))
					tags[i] = object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: write(plumbing.BlobObject, data)}
				}
				return tree([]object.TreeEntry{{Name: "tags", Mode: filemode.Dir, Hash: tree(tags)}})
			})
		})
	})
	sig := object.Signature{Name: "bench", Email: "bench@example.com"}
	var co plumbing.MemoryObject
	if err := (&object.Commit{Author: sig, Committer: sig, TreeHash: root, Message: "registry\n"}).Encode(&co); err != nil {
		tb.Fatal(err)
	}
	rd, _ := co.Reader()
	data, _ := io.ReadAll(rd)
	c := write(plumbing.CommitObject, data)
	w, err := r.st.PackfileWriter()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := packfile.NewEncoder(w, mem, false).Encode(hashes, 0); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	if _, err := publish(context.Background(), dir, Branch, plumbing.ZeroHash, c); err != nil {
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
			b.Run("warm", func(b *testing.B) {
				pushOne(b, r, sh, -1) // load the pack index once
				i := 0
				for b.Loop() {
					pushOne(b, r, sh, i)
					i++
				}
			})
			b.Run("cold", func(b *testing.B) {
				i := 0
				for b.Loop() {
					r, err := Open(dir)
					if err != nil {
						b.Fatal(err)
					}
					pushOne(b, r, sh, 1_000_000+i)
					r.Close()
					i++
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
