package registry

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/opmtest"
)

// bigContent is n bytes that differ from chunk to chunk.
func bigContent(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/4093 + i)
	}
	return string(b)
}

// readChunkList reads and parses the chunk list of a file of pkg.
func readChunkList(t *testing.T, r *Registry, f opm.File) *opm.ChunkList {
	t.Helper()
	b, err := r.OpenBlob(context.Background(), f.Chunks.Digest, f.Chunks.Size)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rd, err := b.Reader()
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	l, err := opm.ParseChunkList(body, f.Size)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestPushChunkLists: a push gives a file above the threshold a chunk list,
// hashed in the same pass as the file, that lists the sha256 of each 4 MiB
// of it, stored as a blob; a small file gets none; the same files give the
// same package digest; fsck --read-data finds the lists right.
func TestPushChunkLists(t *testing.T) {
	r := openHome(t, t.TempDir())
	content := bigContent(opm.ChunkThreshold + opm.DefaultChunkSize/2)
	files := map[string]string{"big": content, "dir/twin": content, "small": "x"}
	src := opmtest.WriteTree(t, files) // one tree: the same times
	pkg := pushDir(t, r, "acme/ml/model:v1", src)
	big := fileDigest(t, pkg, "big")
	if big.Chunks == nil {
		t.Fatal("the big file has no chunk list")
	}
	if twin := fileDigest(t, pkg, "dir/twin"); twin.Chunks == nil || twin.Chunks.Digest != big.Chunks.Digest {
		t.Errorf("the same bytes elsewhere: %+v", twin.Chunks)
	}
	if fileDigest(t, pkg, "small").Chunks != nil {
		t.Error("a small file has a chunk list")
	}
	l := readChunkList(t, r, big)
	if l.ChunkSize != opm.DefaultChunkSize || len(l.Chunks) != 3 {
		t.Fatalf("list: %d chunks of %d", len(l.Chunks), l.ChunkSize)
	}
	for i, d := range l.Chunks {
		off, n := l.Chunk(i)
		if want := digest.FromString(content[off : off+n]); d != want {
			t.Errorf("chunk %d: %s, want %s", i, d, want)
		}
	}
	again := pushDir(t, r, "acme/ml/model:v2", src)
	if again.Digest != pkg.Digest {
		t.Errorf("the same files pushed again: %s, then %s", pkg.Digest, again.Digest)
	}
	if res := fsck(t, r, FsckOptions{ReadData: true}); len(res.Problems) != 0 {
		t.Errorf("fsck: %v", kinds(res))
	}
}

// TestFsckBadChunks: fsck --read-data finds a chunk list that names a
// wrong chunk (naming the chunk) and one that does not parse, each as
// bad-chunks on the file's blob.
func TestFsckBadChunks(t *testing.T) {
	ctx := context.Background()
	r := openHome(t, t.TempDir())
	content := bigContent(opm.ChunkThreshold + 1)
	put := func(b []byte) opm.Descriptor {
		d := digest.FromBytes(b)
		if err := r.PutBlob(ctx, d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return opm.Descriptor{MediaType: opm.MediaTypeChunks, Digest: d, Size: int64(len(b))}
	}
	h := opm.NewChunkHasher(opm.DefaultChunkSize)
	h.Write([]byte(content))
	wrong := h.List()
	wrong.Chunks[1] = digest.FromString("not this")
	wb, _, err := wrong.Encode()
	if err != nil {
		t.Fatal(err)
	}
	file := put([]byte(content))
	put(opm.EmptyJSON)
	for name, list := range map[string][]byte{
		"wrong":   wb,
		"garbled": []byte(`{"mediaType":"` + opm.MediaTypeChunks + `","size":1,"chunkSize":4194304,"chunks":[]}`),
	} {
		t.Run(name, func(t *testing.T) {
			ld := put(list)
			m, err := opm.NewPackage([]opm.File{{Path: "big", Mode: 0o644, Size: file.Size, Digest: file.Digest, Chunks: &ld}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.PutManifest(ctx, mustRef(t, "acme/ml/model:v1").Repository, []string{name}, body, ""); err != nil {
				t.Fatal(err)
			}
			res := fsck(t, r, FsckOptions{ReadData: true})
			var found []string
			for _, p := range res.Problems {
				if p.Kind == ProblemBadChunks && p.Digest == file.Digest && strings.Contains(p.Detail, ld.Digest.String()) {
					found = append(found, p.Detail)
				}
			}
			want := map[string]string{"wrong": "chunk 1 (bytes 4194304 to 8388608) does not match", "garbled": "covers 1 bytes"}[name]
			if !slices.ContainsFunc(found, func(s string) bool { return strings.Contains(s, want) }) {
				t.Errorf("fsck: %v, want bad-chunks %q", res.Problems, want)
			}
			if _, err := r.Remove(ctx, mustRef(t, "acme/ml/model:"+name)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
