package opm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestChunkSizeFor(t *testing.T) {
	for _, c := range []struct {
		size, want int64
	}{
		{0, 0},
		{ChunkThreshold, 0},
		{ChunkThreshold + 1, DefaultChunkSize},
		{MaxChunks * DefaultChunkSize, DefaultChunkSize},
		{MaxChunks*DefaultChunkSize + 1, 2 * DefaultChunkSize},
		{MaxSize, MaxChunkSize},
	} {
		if got := ChunkSizeFor(c.size); got != c.want {
			t.Errorf("ChunkSizeFor(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

// TestChunkHasher: the list of what is written, however it is cut into
// writes, is the sha256 of each chunk-size piece, the last shorter.
func TestChunkHasher(t *testing.T) {
	const cs = MinChunkSize
	data := make([]byte, 3*cs+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var want []digest.Digest
	for off := 0; off < len(data); off += cs {
		want = append(want, digest.FromBytes(data[off:min(off+cs, len(data))]))
	}
	for _, step := range []int{1 << 20, cs, cs - 1, 4096, 1000} {
		h := NewChunkHasher(cs)
		for off := 0; off < len(data); off += step {
			h.Write(data[off:min(off+step, len(data))])
		}
		l := h.List()
		if l.Size != int64(len(data)) || l.ChunkSize != cs || len(l.Chunks) != len(want) {
			t.Fatalf("writes of %d: %+v", step, l)
		}
		for i := range want {
			if l.Chunks[i] != want[i] {
				t.Fatalf("writes of %d: chunk %d is %s, want %s", step, i, l.Chunks[i], want[i])
			}
		}
		b, _, err := l.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseChunkList(b, int64(len(data)))
		if err != nil || len(back.Chunks) != len(want) {
			t.Fatalf("round trip: %v", err)
		}
		if off, n := back.Chunk(3); off != 3*cs || n != 123 {
			t.Errorf("last chunk: %d+%d", off, n)
		}
	}
}

// TestParseChunkListRefuses: a list that does not parse, covers another
// length, has a chunk size out of range or not a power of two, too few or
// too many chunks, a bad digest, or is absurdly large is refused, as
// invalid, naming why.
func TestParseChunkListRefuses(t *testing.T) {
	const size = 2*MinChunkSize + 1
	good := NewChunkHasher(MinChunkSize)
	good.Write(make([]byte, size))
	list := good.List()
	edit := func(f func(*ChunkList)) []byte {
		c := *list
		c.Chunks = append([]digest.Digest(nil), list.Chunks...)
		f(&c)
		b, _, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := ParseChunkList(edit(func(*ChunkList) {}), size); err != nil {
		t.Fatalf("the good list: %v", err)
	}
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"not json":        {[]byte("{"), "malformed chunk list"},
		"unknown field":   {[]byte(`{"mediaType":"` + MediaTypeChunks + `","extra":1}`), "unknown field"},
		"media type":      {edit(func(c *ChunkList) { c.MediaType = "text/plain" }), "mediaType"},
		"other length":    {edit(func(c *ChunkList) { c.Size = size + 1 }), "covers"},
		"odd chunk size":  {edit(func(c *ChunkList) { c.ChunkSize = MinChunkSize + 1 }), "power of two"},
		"tiny chunks":     {edit(func(c *ChunkList) { c.ChunkSize = MinChunkSize / 2 }), "power of two"},
		"a chunk short":   {edit(func(c *ChunkList) { c.Chunks = c.Chunks[:2] }), "has 2 chunks"},
		"a chunk more":    {edit(func(c *ChunkList) { c.Chunks = append(c.Chunks, c.Chunks[0]) }), "has 4 chunks"},
		"bad digest":      {edit(func(c *ChunkList) { c.Chunks[1] = "sha256:abc" }), "chunk 1"},
		"absurdly large":  {bytes.Repeat([]byte(" "), MaxChunkListSize+1), "over the"},
		"million for few": {edit(func(c *ChunkList) { c.Chunks = make([]digest.Digest, 1<<20) }), "has 1048576 chunks"},
	} {
		_, err := ParseChunkList(c.b, size)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an invalid error with %q", name, err, c.want)
		}
	}
}

// TestPackageChunks: a file's chunk list is named by its layer and is an
// untitled layer after the files, read back as the file's Chunks; a
// manifest naming a list it lacks, or a link with one, is refused.
func TestPackageChunks(t *testing.T) {
	list := &Descriptor{MediaType: MediaTypeChunks, Digest: digest.FromString("list"), Size: 100}
	big := File{Path: "big", Mode: 0o644, Size: ChunkThreshold + 1, Digest: digest.FromString("big"), Chunks: list}
	twin := big
	twin.Path = "twin"
	small := File{Path: "a", Mode: 0o644, Size: 1, Digest: digest.FromString("a")}
	m, err := NewPackage([]File{big, small, twin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 4 || m.Layers[3].Digest != list.Digest || m.Layers[3].Annotations[AnnotationTitle] != "" {
		t.Fatalf("layers: %+v", m.Layers)
	}
	b, _, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	files := back.Files()
	if len(files) != 3 || files[1].Chunks == nil || files[1].Chunks.Digest != list.Digest || files[1].Chunks.Size != list.Size || files[0].Chunks != nil {
		t.Fatalf("files: %+v", files)
	}
	if len(back.Blobs()) != 4 { // config, two contents (the twin shares one), the list
		t.Errorf("blobs: %v", back.Blobs())
	}
	for name, c := range map[string]struct {
		from, to, want string
	}{
		"list missing":   {`"mediaType": "` + MediaTypeChunks + `"`, `"mediaType": "text/plain"`, "is no untitled layer"},
		"bad annotation": {`"dev.opm.file.chunks": "` + list.Digest.String(), `"dev.opm.file.chunks": "sha256:x`, "is no untitled layer"},
	} {
		bad := strings.Replace(string(b), c.from, c.to, 1)
		if _, err := ParseManifest([]byte(bad)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	link := File{Path: "l", Symlink: "big", Chunks: list}
	if _, err := NewPackage([]File{link}, nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a link with a chunk list: %v", err)
	}
}
