package bench

// Benchmarks of opm sync SRC DST (package opmsync), between file:// buckets
// and bare git repositories on local disk:
//
//	go test -run '^$' -bench Sync -benchtime 1x ./bench/

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
	opmsync "github.com/openpm/opm/sync"
)

// countingBlobs counts the operations on a bucket and the bytes read.
type countingBlobs struct {
	opmsync.Blobs
	ops, bytes atomic.Int64
}

func (c *countingBlobs) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	c.ops.Add(1)
	return c.Blobs.Stat(ctx, d)
}

func (c *countingBlobs) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	c.ops.Add(1)
	rc, err := c.Blobs.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	return &countingReader{rc, &c.bytes}, nil
}

func (c *countingBlobs) Store(ctx context.Context, d digest.Digest, n int64, r io.Reader, lookup bool) (bool, error) {
	c.ops.Add(1)
	return c.Blobs.Store(ctx, d, n, r, lookup)
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// syncSource is a registry on disk: metadata in a bare repository, blobs
// in a file:// bucket directory.
type syncSource struct {
	meta, bucket string
	repo         *gitmeta.Repo
}

// newSyncSource writes tags tags (spread over repositories of 100 tags)
// of blobsPerTag random blobs of size bytes each, in one commit.
func newSyncSource(b *testing.B, dir string, tags, blobsPerTag, size int) *syncSource {
	b.Helper()
	s := &syncSource{meta: filepath.Join(dir, "src-meta.git"), bucket: filepath.Join(dir, "src-blobs")}
	var err error
	if s.repo, err = gitmeta.Init(s.meta); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.repo.Close() })
	if err := os.MkdirAll(filepath.Join(s.bucket, "blobs", "sha256"), 0o755); err != nil {
		b.Fatal(err)
	}
	s.writeBlob(b, opm.EmptyJSON)
	s.addTags(b, 0, tags, blobsPerTag, size)
	return s
}

// writeBlob puts a blob straight into the bucket directory, in fileblob's
// layout (no attributes file: fileblob does without).
func (s *syncSource) writeBlob(b *testing.B, data []byte) digest.Digest {
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	if err := os.WriteFile(filepath.Join(s.bucket, "blobs", "sha256", h), data, 0o644); err != nil {
		b.Fatal(err)
	}
	return digest.NewDigestFromEncoded(digest.SHA256, h)
}

// addTags commits tags [from, from+n) with their blobs.
func (s *syncSource) addTags(b *testing.B, from, n, blobsPerTag, size int) {
	b.Helper()
	changes := make([]gitmeta.Change, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			t := from + i
			rng := rand.New(rand.NewChaCha8([32]byte{byte(t), byte(t >> 8), byte(t >> 16), 7}))
			files := make([]opm.File, blobsPerTag)
			buf := make([]byte, size)
			for j := range files {
				for k := range buf {
					buf[k] = byte(rng.Uint32())
				}
				files[j] = opm.File{Path: fmt.Sprintf("f%03d", j), Mode: 0o644, Size: int64(size), Digest: s.writeBlob(b, buf)}
			}
			m, err := opm.NewPackage(files, nil)
			if err != nil {
				b.Error(err)
				return
			}
			body, _, err := m.Encode()
			if err != nil {
				b.Error(err)
				return
			}
			repo := opm.Repository{Namespace: "bench", Project: fmt.Sprintf("p%03d", t/100), Name: "data"}
			changes[i] = gitmeta.Change{Path: layout.TagPath(repo, fmt.Sprintf("v%d", t)), Data: body}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	_, _, err := s.repo.Update(context.Background(), gitmeta.Signature{Name: "bench", Email: "bench@example.org"},
		func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
			return changes, gitmeta.Message{Subject: fmt.Sprintf("add %d tags", n)}, nil
		})
	if err != nil {
		b.Fatal(err)
	}
}

// syncDest is an empty mirror: a bare repository and a bucket directory.
func syncDest(b *testing.B, dir string) (meta, bucket string) {
	b.Helper()
	meta, bucket = filepath.Join(dir, "dst-meta.git"), filepath.Join(dir, "dst-blobs")
	os.RemoveAll(meta)
	os.RemoveAll(bucket)
	if out, err := exec.Command("git", "init", "-q", "--bare", "--initial-branch=main", meta).CombinedOutput(); err != nil {
		b.Fatalf("git init: %v %s", err, out)
	}
	if err := os.MkdirAll(bucket, 0o755); err != nil {
		b.Fatal(err)
	}
	return meta, bucket
}

// dstQuery are the destination bucket's URL parameters. metadata=skip:
// no attributes sidecar file per blob (opm keeps none); no_tmp_dir: the
// file is written next to its final name, not in $TMPDIR.
var dstQuery = "?metadata=skip&no_tmp_dir=1"

// mirror runs one opm sync src dst with counted buckets.
func mirror(b *testing.B, home string, src *syncSource, dstMeta, dstBucket string) (*opmsync.Result, int64, int64, int64) {
	b.Helper()
	ctx := context.Background()
	r, err := registry.Open(ctx, home)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for _, rm := range []registry.Remote{
		{Name: "src", URL: src.meta, Blobs: "file://" + src.bucket},
		{Name: "dst", URL: dstMeta, Blobs: "file://" + dstBucket},
	} {
		if err := r.AddRemote(ctx, rm); err != nil && !errors.Is(err, opm.ErrExists) {
			b.Fatal(err)
		}
	}
	sb, err := cas.OpenBucket(ctx, "file://"+src.bucket)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	db, err := cas.OpenBucket(ctx, "file://"+dstBucket+dstQuery)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	cs, cd := &countingBlobs{Blobs: sb}, &countingBlobs{Blobs: db}
	res, err := opmsync.Mirror(ctx, r, "src", "dst", opmsync.Options{
		Src: func(opmsync.Blobs) opmsync.Blobs { return cs },
		Dst: func(opmsync.Blobs) opmsync.Blobs { return cd },
	})
	if err != nil {
		b.Fatal(err)
	}
	return res, cs.ops.Load(), cd.ops.Load(), cs.bytes.Load()
}

// BenchmarkSyncFirstMirror50k: the first mirror of 50k blobs of 6 KiB
// (~300 MB, 1000 tags of 50 blobs) between file:// buckets, against cp -r
// of the bucket directory.
func BenchmarkSyncFirstMirror50k(b *testing.B) {
	dir := b.TempDir()
	src := newSyncSource(b, dir, 1000, 50, 6<<10)
	var dstMeta, dstBucket string
	var res *opmsync.Result
	var srcOps, dstOps, read int64
	compare(b, "x-cp-r",
		func() { os.RemoveAll(filepath.Join(dir, "cp")); run(b, nil, "sync") },
		func() { run(b, nil, "cp", "-r", src.bucket, filepath.Join(dir, "cp")) },
		func() {
			dstMeta, dstBucket = syncDest(b, dir)
			os.RemoveAll(filepath.Join(dir, "home"))
			run(b, nil, "sync")
		},
		func() { res, srcOps, dstOps, read = mirror(b, filepath.Join(dir, "home"), src, dstMeta, dstBucket) })
	if res.Copied != 50001 {
		b.Fatalf("copied %d blobs, want 50001", res.Copied)
	}
	b.ReportMetric(float64(srcOps+dstOps), "bucket-requests")
	b.ReportMetric(float64(read)/1e6, "MB-read")
	b.Logf("%d tags, %d blobs copied, %d MB; bucket requests: %d at the source, %d at the destination; git requests %d",
		len(res.Tags), res.Copied, res.Bytes/1e6, srcOps, dstOps, res.GitRequests)
}

// BenchmarkSyncNoop10kTags: a sync of a 10k-tag registry into an
// up-to-date mirror, then one after a single new tag.
func BenchmarkSyncNoop10kTags(b *testing.B) {
	dir := b.TempDir()
	src := newSyncSource(b, dir, 10000, 1, 1024)
	dstMeta, dstBucket := syncDest(b, dir)
	home := filepath.Join(dir, "home")
	start := time.Now()
	res, _, _, _ := mirror(b, home, src, dstMeta, dstBucket)
	b.Logf("setup: first mirror of 10k tags (%d blobs) in %v", res.Copied, time.Since(start))

	var ts []time.Duration
	var srcOps, dstOps, read int64
	for range rounds {
		start := time.Now()
		res, srcOps, dstOps, read = mirror(b, home, src, dstMeta, dstBucket)
		ts = append(ts, time.Since(start))
		if res.Mode != "up-to-date" {
			b.Fatalf("no-op sync: %+v", res)
		}
	}
	b.ReportMetric(median(ts).Seconds(), "noop-s")
	b.ReportMetric(float64(srcOps+dstOps), "noop-bucket-requests")
	b.ReportMetric(float64(res.GitRequests), "noop-git-requests")
	b.Logf("no-op: %v (median of %v), bucket requests %d, bytes read %d, git requests %d", median(ts), ts, srcOps+dstOps, read, res.GitRequests)

	// One new tag (one new blob, the config blob is there already).
	ts = nil
	for i := range rounds {
		src.addTags(b, 10000+i, 1, 1, 1024)
		start := time.Now()
		res, srcOps, dstOps, read = mirror(b, home, src, dstMeta, dstBucket)
		ts = append(ts, time.Since(start))
		if len(res.Tags) != 1 || res.Copied != 1 {
			b.Fatalf("sync after one tag: %+v", res)
		}
	}
	b.ReportMetric(median(ts).Seconds(), "onetag-s")
	b.ReportMetric(float64(srcOps+dstOps), "onetag-bucket-requests")
	b.ReportMetric(float64(read), "onetag-bytes-read")
	b.Logf("one new tag: %v (median of %v), bucket requests %d (%d source, %d destination), blob bytes read %d, git requests %d",
		median(ts), ts, srcOps+dstOps, srcOps, dstOps, read, res.GitRequests)
}
