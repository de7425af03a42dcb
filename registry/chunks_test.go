package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/layout"
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
// hashed in the same pass as the file, that lists the sha256 of each 1 MiB
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
	if want := (len(content) + opm.DefaultChunkSize - 1) / opm.DefaultChunkSize; l.ChunkSize != opm.DefaultChunkSize || len(l.Chunks) != want {
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
			want := map[string]string{"wrong": "chunk 1 (bytes 1048576 to 2097152) does not match", "garbled": "covers 1 bytes"}[name]
			if !slices.ContainsFunc(found, func(s string) bool { return strings.Contains(s, want) }) {
				t.Errorf("fsck: %v, want bad-chunks %q", res.Problems, want)
			}
			if _, err := r.Remove(ctx, mustRef(t, "acme/ml/model:"+name)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// partialOf pushes a big file (three chunks) into a home with a bucket,
// removes its blob from the local store, and reads its first chunk
// lazily: the store then holds that chunk as a partial blob.
func partialOf(t *testing.T) (*Registry, opm.File, string) {
	t.Helper()
	r, _ := cacheHome(t, "file://"+t.TempDir(), 0, 0)
	content := bigContent(opm.ChunkThreshold + 1000)
	pkg := pushDir(t, r, "acme/ml/model:v1", opmtest.WriteTree(t, map[string]string{"big": content}))
	f := fileDigest(t, pkg, "big")
	if err := r.local.Delete(context.Background(), f.Digest); err != nil {
		t.Fatal(err)
	}
	b, listErr, err := r.OpenFileBlob(context.Background(), &f)
	if err != nil || listErr != nil || !b.Lazy() {
		t.Fatalf("open lazily: %v, %v, lazy %v", err, listErr, b != nil && b.Lazy())
	}
	if err := b.Ready(context.Background(), 10, 100); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return r, f, content
}

// TestPartialBlobsInTheCache: the chunks of a partial blob count in the
// store's usage, are listed and evicted like whole blobs (not while open),
// and are checked by fsck --read-data, which removes a wrong one with
// --repair.
func TestPartialBlobsInTheCache(t *testing.T) {
	ctx := context.Background()
	r, f, _ := partialOf(t)
	blobs, err := r.CachedBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(blobs, func(b CachedBlob) bool { return b.Digest == f.Digest })
	if i < 0 || !blobs[i].Partial || blobs[i].BlobSize != f.Size || blobs[i].Size < opm.DefaultChunkSize || blobs[i].Size >= f.Size {
		t.Fatalf("cache listing of the partial blob: %+v", blobs)
	}
	if used := storeBytes(t, r); used < opm.DefaultChunkSize {
		t.Fatalf("the store's usage, %d bytes, leaves out the partial blob's chunk", used)
	}

	// Open, it is kept; closed, it goes.
	b, _, err := r.OpenFileBlob(ctx, &f)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Prune(ctx, PruneOptions{All: true})
	if err != nil || slices.Contains(evictedDigests(res), f.Digest) {
		t.Fatalf("prune with the partial blob open: %v, evicted %v", err, evictedDigests(res))
	}
	b.Close()
	res, err = r.Prune(ctx, PruneOptions{All: true})
	if err != nil || !slices.Contains(evictedDigests(res), f.Digest) {
		t.Fatalf("prune with the partial blob closed: %v, evicted %v", err, evictedDigests(res))
	}
	if parts, _ := r.local.Partials(); len(parts) != 0 {
		t.Fatalf("partial blobs left after eviction: %+v", parts)
	}
}

func TestFsckBadPartial(t *testing.T) {
	ctx := context.Background()
	r, f, content := partialOf(t)
	res, err := r.Fsck(ctx, FsckOptions{ReadData: true})
	if err != nil || len(res.Problems) != 0 {
		t.Fatalf("fsck of a good partial blob: %v, %+v", err, res.Problems)
	}
	parts, err := r.local.Partials()
	if err != nil || len(parts) != 1 {
		t.Fatalf("partials: %v %+v", err, parts)
	}
	// A byte of its present chunk goes bad on disk.
	fd, err := os.OpenFile(parts[0].Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd.WriteAt([]byte{content[5] ^ 1}, 5)
	fd.Close()
	res, err = r.Fsck(ctx, FsckOptions{ReadData: true})
	if err != nil || len(res.Problems) != 1 || res.Problems[0].Kind != ProblemBadPartial || res.Problems[0].Digest != f.Digest || !strings.Contains(res.Problems[0].Detail, "chunk 0") {
		t.Fatalf("fsck of a partial blob with a wrong byte: %v, %+v", err, res.Problems)
	}
	res, err = r.Fsck(ctx, FsckOptions{ReadData: true, Repair: true})
	if err != nil || len(res.Problems) != 1 || !res.Problems[0].Repaired {
		t.Fatalf("fsck --repair: %v, %+v", err, res.Problems)
	}
	// Read again, the chunk is fetched anew and right.
	b, _, err := r.OpenFileBlob(ctx, &f)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Ready(ctx, 0, 100); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 100)
	if _, err := b.File().ReadAt(got, 0); err != nil || string(got) != content[:100] {
		t.Fatalf("read after repair: %v", err)
	}
}

// TestPullFetchesChunksInParallel: opm pull of a big file that is not
// local fetches it by ranges (ranged GETs of 4 MiB, transfer.jobs at a
// time, each chunk verified), writes the right bytes, and leaves the blob
// whole in the store.
func TestPullFetchesChunksInParallel(t *testing.T) {
	ctx := context.Background()
	r, _ := cacheHome(t, "file://"+t.TempDir(), 0, 0)
	content := bigContent(opm.ChunkThreshold + 3*opm.DefaultChunkSize + 5)
	pkg := pushDir(t, r, "acme/ml/model:v1", opmtest.WriteTree(t, map[string]string{"big": content}))
	f := fileDigest(t, pkg, "big")
	if err := r.local.Delete(ctx, f.Digest); err != nil {
		t.Fatal(err)
	}
	before := r.bucket.Requests()
	out := t.TempDir()
	if _, err := r.Pull(ctx, mustRef(t, "acme/ml/model:v1"), out, false, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(out, "big")); err != nil || string(got) != content {
		t.Fatalf("pulled big: %v (right bytes: %v)", err, string(got) == content)
	}
	// Ranged GETs of 4 MiB of chunks each (one GET of the whole is 1).
	gets := (len(content) + 4<<20 - 1) / (4 << 20)
	if n := r.bucket.Requests() - before; n != int64(gets) {
		t.Fatalf("the pull sent %d requests to the bucket; a file of %d bytes fetched by 4 MiB ranges sends %d", n, len(content), gets)
	}
	opmtest.Eventually(t, "the pulled blob whole in the store", func() error {
		if !r.local.Has(f.Digest) {
			return errors.New("not local")
		}
		return nil
	})
}

// TestPrefetchAndPinFetchChunksInParallel: opm sync --prefetch and opm
// cache pin fetch a big file by ranges of chunks, not by one serial GET,
// and leave it whole in the store; its chunk list too when it was not
// local (a follower's case).
func TestPrefetchAndPinFetchChunksInParallel(t *testing.T) {
	ctx := context.Background()
	r, _ := cacheHome(t, "file://"+t.TempDir(), 0, 0)
	content := bigContent(opm.ChunkThreshold + 5*opm.DefaultChunkSize + 7)
	pkg := pushDir(t, r, "acme/ml/model:v1", opmtest.WriteTree(t, map[string]string{"big": content, "small": "hello"}))
	f := fileDigest(t, pkg, "big")
	gets := int64((len(content) + 4<<20 - 1) / (4 << 20)) // ranges of 4 MiB; one GET of the whole is 1
	for _, c := range []struct {
		name     string
		dropList bool
		fetch    func() error
	}{
		{"prefetch", false, func() error {
			v, err := r.View()
			if err != nil {
				return err
			}
			return r.prefetch(ctx, v.Commit(), layout.Filter{}, nil, &SyncResult{})
		}},
		{"pin", true, func() error {
			_, err := r.Pin(ctx, "acme/ml/model:v1", nil)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := gets
			drop := []digest.Digest{f.Digest}
			if c.dropList {
				drop = append(drop, f.Chunks.Digest)
				want++
			}
			for _, d := range drop {
				if err := r.local.Delete(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			before := r.bucket.Requests()
			if err := c.fetch(); err != nil {
				t.Fatal(err)
			}
			if n := r.bucket.Requests() - before; n != want {
				t.Fatalf("%d requests to the bucket; a file of %d bytes fetched by 4 MiB ranges (list local: %v) sends %d", n, len(content), !c.dropList, want)
			}
			if !r.local.Has(f.Digest) {
				t.Fatal("the blob is not whole in the store")
			}
			b, err := r.OpenBlob(ctx, f.Digest, f.Size)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			err = b.CopyTo(ctx, &got)
			b.Close()
			if err != nil || got.String() != content {
				t.Fatalf("read back: %v (right bytes: %v)", err, got.String() == content)
			}
		})
	}
}
