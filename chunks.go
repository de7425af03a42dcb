package opm

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"math/bits"

	"github.com/opencontainers/go-digest"
)

// Chunk lists (docs/design.md §2): a file above ChunkThreshold carries a
// small blob listing the sha256 of each fixed-size piece of its content,
// so that a reader can fetch a range of the file and verify it before
// serving a byte of it. The file's layer names the list
// (AnnotationChunks); the list is also an untitled layer of the manifest
// (MediaTypeChunks), so that every OCI client copies it with the package
// and gc keeps it. The layer's digest stays the sha256 of the whole file.

const (
	// MediaTypeChunks is the media type of a chunk list.
	MediaTypeChunks = "application/vnd.opm.chunks.v1+json"
	// AnnotationChunks, on a file's layer, is the digest of its chunk
	// list.
	AnnotationChunks = "dev.opm.file.chunks"

	// ChunkThreshold: a file of more bytes than this gets a chunk list.
	ChunkThreshold = 8 << 20
	// DefaultChunkSize is the size of a chunk (the last may be shorter),
	// doubled for files so big that they would have more than MaxChunks
	// (above 64 GiB). 1 MiB, as Nydus: behind a bucket 20 ms away at
	// 200 MB/s (BenchmarkMountLazy) a chunk of 4 MiB takes twice a small
	// GET, so a random read waits up to 3.5× one; a chunk of 1 MiB takes
	// 1.2× one, and a sequential read keeps as many bytes in flight.
	DefaultChunkSize = 1 << 20
	// MinChunkSize and MaxChunkSize bound a chunk list's chunk size, a
	// power of two; MaxChunks bounds its number of chunks (a list of
	// MaxChunks is about 5 MiB), MaxChunkListSize its bytes.
	MinChunkSize     = 64 << 10
	MaxChunkSize     = 1 << 30
	MaxChunks        = 1 << 16
	MaxChunkListSize = 8 << 20
)

// ChunkListsOf maps each layer of ds that names a chunk list
// (AnnotationChunks) to that list, when the list is among ds too (an
// untitled layer of MediaTypeChunks): the blobs of a package, or of several
// (AnyManifest.Blobs keeps the layers' annotations).
func ChunkListsOf(ds []Descriptor) map[digest.Digest]Descriptor {
	var lists map[string]Descriptor
	out := map[digest.Digest]Descriptor{}
	for _, d := range ds {
		c, ok := d.Annotations[AnnotationChunks]
		if !ok {
			continue
		}
		if lists == nil {
			lists = chunkLayers(ds)
		}
		if list, found := lists[c]; found {
			out[d.Digest] = list
		}
	}
	return out
}

// ChunkList is the content of a chunk-list blob: the file's size, the
// chunk size, and the digest of each chunk in order. Chunk i covers bytes
// [i*ChunkSize, min((i+1)*ChunkSize, Size)).
type ChunkList struct {
	MediaType string          `json:"mediaType"`
	Size      int64           `json:"size"`
	ChunkSize int64           `json:"chunkSize"`
	Chunks    []digest.Digest `json:"chunks"`
}

// ChunkSizeFor is the chunk size of a file of size bytes, 0 when it gets
// no chunk list: DefaultChunkSize, doubled until the file has at most
// MaxChunks chunks. The same size always gives the same answer, so that
// the same files give the same package digest.
func ChunkSizeFor(size int64) int64 {
	if size <= ChunkThreshold {
		return 0
	}
	cs := int64(DefaultChunkSize)
	for (size+cs-1)/cs > MaxChunks && cs < MaxChunkSize {
		cs *= 2
	}
	return cs
}

// Chunk returns the offset and length of chunk i.
func (c *ChunkList) Chunk(i int) (off, n int64) {
	off = int64(i) * c.ChunkSize
	return off, min(c.ChunkSize, c.Size-off)
}

// Encode returns the canonical bytes of the list (compact JSON, one
// trailing newline) and their digest.
func (c *ChunkList) Encode() ([]byte, digest.Digest, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), digest.FromBytes(buf.Bytes()), nil
}

// ParseChunkList decodes and checks a chunk list for a file of size bytes:
// its media type, a power-of-two chunk size in range, exactly the number of
// chunks that cover size, each a valid sha256 digest. Anything else is an
// ErrInvalid error: a reader then does not use the list.
func ParseChunkList(b []byte, size int64) (*ChunkList, error) {
	if len(b) > MaxChunkListSize {
		return nil, Errorf(ErrInvalid, "chunk list of %d bytes is over the %d-byte limit", len(b), MaxChunkListSize)
	}
	var c ChunkList
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, Errorf(ErrInvalid, "malformed chunk list: %v", err)
	}
	if c.MediaType != MediaTypeChunks {
		return nil, Errorf(ErrInvalid, "chunk list mediaType %q, want %s", c.MediaType, MediaTypeChunks)
	}
	if c.Size != size {
		return nil, Errorf(ErrInvalid, "chunk list covers %d bytes, the file has %d", c.Size, size)
	}
	if c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize || bits.OnesCount64(uint64(c.ChunkSize)) != 1 {
		return nil, Errorf(ErrInvalid, "chunk list chunk size %d: want a power of two from %d to %d", c.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if want := (size + c.ChunkSize - 1) / c.ChunkSize; int64(len(c.Chunks)) != want {
		return nil, Errorf(ErrInvalid, "chunk list has %d chunks, %d bytes in chunks of %d make %d", len(c.Chunks), size, c.ChunkSize, want)
	}
	for i, d := range c.Chunks {
		if _, err := ParseDigest(string(d)); err != nil {
			return nil, fmt.Errorf("chunk list chunk %d: %w", i, err)
		}
	}
	return &c, nil
}

// ChunkHasher is an io.Writer that cuts what is written to it into chunks
// of a fixed size and hashes each: the chunk list of the bytes written.
type ChunkHasher struct {
	size   int64 // the chunk size
	h      hash.Hash
	inCur  int64 // bytes of the current chunk hashed
	total  int64
	chunks []digest.Digest
}

// NewChunkHasher hashes chunks of chunkSize bytes.
func NewChunkHasher(chunkSize int64) *ChunkHasher {
	return &ChunkHasher{size: chunkSize, h: sha256.New()}
}

func (c *ChunkHasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(int64(len(p)), c.size-c.inCur)
		c.h.Write(p[:k])
		c.inCur += k
		c.total += k
		p = p[k:]
		if c.inCur == c.size {
			c.cut()
		}
	}
	return n, nil
}

func (c *ChunkHasher) cut() {
	c.chunks = append(c.chunks, digest.NewDigest(digest.SHA256, c.h))
	c.h.Reset()
	c.inCur = 0
}

// List returns the chunk list of everything written.
func (c *ChunkHasher) List() *ChunkList {
	if c.inCur > 0 {
		c.cut()
	}
	return &ChunkList{MediaType: MediaTypeChunks, Size: c.total, ChunkSize: c.size, Chunks: c.chunks}
}
