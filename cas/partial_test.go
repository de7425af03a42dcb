package cas_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"gocloud.dev/blob/memblob"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/faultproxy"
	"github.com/openpm/opm/internal/opmtest"
)

// testChunk is the chunk size of the tests' lists: small, so that a blob
// of a few hundred KiB has several chunks.
const testChunk = 64 << 10

// chunkListOf is the chunk list of data, and its digest.
func chunkListOf(t testing.TB, data []byte) (*opm.ChunkList, digest.Digest) {
	t.Helper()
	return chunkListSized(t, data, testChunk)
}

// chunkListSized is the chunk list of data in chunks of size bytes.
func chunkListSized(t testing.TB, data []byte, size int64) (*opm.ChunkList, digest.Digest) {
	t.Helper()
	h := opm.NewChunkHasher(size)
	h.Write(data)
	list := h.List()
	_, ld, err := list.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return list, ld
}

// rawBucket is a Bucket whose object for d holds exactly obj, whatever its
// digest: a bucket serving wrong bytes.
func rawBucket(t *testing.T, d digest.Digest, obj []byte) *cas.Bucket {
	t.Helper()
	gb := memblob.OpenBucket(nil)
	if err := gb.WriteAll(context.Background(), "blobs/sha256/"+d.Encoded(), obj, nil); err != nil {
		t.Fatal(err)
	}
	b := cas.NewBucket(gb)
	b.Retry = fastRetry
	t.Cleanup(func() { b.Close() })
	return b
}

// readPartial makes n bytes at off present and reads them from the file.
func readPartial(p *cas.Partial, off, n int64) ([]byte, error) {
	if err := p.Ensure(context.Background(), off, n); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	got, err := p.File().ReadAt(buf, off)
	if err == io.EOF {
		err = nil
	}
	return buf[:got], err
}

func TestPartialReadsOnlyTheChunksAsked(t *testing.T) {
	c, b, p := faultyCache(t)
	data, d := castest.Blob(11, 10*testChunk+123)
	castest.MustPut(t, b, d, data)
	list, ld := chunkListOf(t, data)

	part, err := c.OpenPartial(d, ld, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	p.Set(blobsOnly(faultproxy.Plan{})) // count, inject nothing
	before := p.Stats()
	got, err := readPartial(part, 3*testChunk+100, 4096)
	if err != nil || !bytes.Equal(got, data[3*testChunk+100:3*testChunk+100+4096]) {
		t.Fatalf("read in chunk 3: %v (bytes equal: %v)", err, bytes.Equal(got, data[3*testChunk+100:3*testChunk+100+4096]))
	}
	if n := part.Fetches(); n != 1 {
		t.Fatalf("a read inside one chunk sent %d ranged GETs, want 1", n)
	}
	if s := p.Stats().Sub(before); s.Covered != 1 {
		t.Fatalf("the bucket saw %d requests of blobs, want 1", s.Covered)
	}
	// Read again: present, no request. Across chunks 3–5: one more, for
	// chunks 4 and 5 together.
	if _, err := readPartial(part, 3*testChunk, 100); err != nil {
		t.Fatal(err)
	}
	if got, err := readPartial(part, 3*testChunk+testChunk/2, 2*testChunk); err != nil || !bytes.Equal(got, data[3*testChunk+testChunk/2:5*testChunk+testChunk/2]) {
		t.Fatalf("read across chunks 3–5: %v", err)
	}
	if n := part.Fetches(); n != 2 {
		t.Fatalf("after reads of chunks 3, 3 and 3–5: %d ranged GETs, want 2", n)
	}
	if c.Local().Has(d) {
		t.Fatal("a blob read in part is in the store as a whole blob")
	}
}

func TestPartialSharesAChunkBetweenReaders(t *testing.T) {
	c, b, p := faultyCache(t)
	data, d := castest.Blob(12, 4*testChunk)
	castest.MustPut(t, b, d, data)
	list, ld := chunkListOf(t, data)
	p.Set(blobsOnly(faultproxy.Plan{Delay: 50 * time.Millisecond})) // 50 ms: the readers overlap

	const readers = 4
	bar := opmtest.NewBarrier(readers)
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Go(func() {
			part, err := c.OpenPartial(d, ld, list, 0)
			if err != nil {
				errs <- err
				return
			}
			defer part.Close()
			bar.Wait()
			got, err := readPartial(part, testChunk+1, 10)
			if err == nil && !bytes.Equal(got, data[testChunk+1:testChunk+11]) {
				err = errors.New("wrong bytes")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s := p.Stats(); s.Delayed != 1 {
		t.Fatalf("%d readers of one chunk sent %d requests, want 1", readers, s.Delayed)
	}
}

func TestPartialBecomesWhole(t *testing.T) {
	c, b, _ := faultyCache(t)
	data, d := castest.Blob(13, 5*testChunk+7)
	castest.MustPut(t, b, d, data)
	list, ld := chunkListOf(t, data)
	part, err := c.OpenPartial(d, ld, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readPartial(part, 0, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read all: %v", err)
	}
	part.Close()
	opmtest.Eventually(t, "the partial blob promoted to a whole blob", func() error {
		if !c.Local().Has(d) {
			return errors.New("not in the store")
		}
		return nil
	})
	castest.MustRead(t, c.Local(), d, data)
	left, _ := os.ReadDir(filepath.Join(filepath.Dir(c.Local().FileTree()), "partial"))
	if len(left) != 0 {
		t.Fatalf("partial files left after promotion: %v", left)
	}
}

func TestPartialRefusesWrongChunks(t *testing.T) {
	data, d := castest.Blob(14, 4*testChunk)
	list, ld := chunkListOf(t, data)
	bad := bytes.Clone(data)
	bad[2*testChunk+5] ^= 0xff // chunk 2 is wrong in the bucket
	c := cas.NewCache(openLocal(t, nil), rawBucket(t, d, bad))

	part, err := c.OpenPartial(d, ld, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	if _, err := readPartial(part, 2*testChunk, 10); !errors.Is(err, opm.ErrIntegrity) {
		t.Fatalf("read of a chunk whose bytes do not match the list: %v, want an integrity error", err)
	}
	if n := part.Fetches(); n != int64(fastRetry.Attempts) {
		t.Fatalf("a wrong chunk was tried %d times, want %d", n, fastRetry.Attempts)
	}
	if _, err := readPartial(part, 2*testChunk+testChunk-1, 1); !errors.Is(err, opm.ErrIntegrity) {
		t.Fatalf("the wrong chunk read again: %v, want an integrity error (it must not count as present)", err)
	}
	if got, err := readPartial(part, testChunk, 10); err != nil || !bytes.Equal(got, data[testChunk:testChunk+10]) {
		t.Fatalf("a good chunk beside the wrong one: %v", err)
	}
}

func TestPartialListThatLies(t *testing.T) {
	// The bucket's object and the list agree, but not with the digest:
	// every chunk verifies, the whole does not. It is never promoted and
	// nothing more is served.
	_, d := castest.Blob(15, 3*testChunk)
	other, _ := castest.Blob(16, 3*testChunk)
	list, ld := chunkListOf(t, other)
	c := cas.NewCache(openLocal(t, nil), rawBucket(t, d, other))
	part, err := c.OpenPartial(d, ld, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	// Each chunk matches its list; the read that completes the blob may
	// already see the whole fail.
	if _, err := readPartial(part, 0, int64(len(other))); err != nil && !errors.Is(err, opm.ErrIntegrity) {
		t.Fatal(err)
	}
	opmtest.Eventually(t, "reads refused once the whole failed its digest", func() error {
		_, err := readPartial(part, 0, 1)
		if !errors.Is(err, opm.ErrIntegrity) {
			return fmt.Errorf("read: %v", err)
		}
		return nil
	})
	if c.Local().Has(d) {
		t.Fatal("a blob that fails its digest was installed")
	}
}

func TestPartialBadRanges(t *testing.T) {
	for _, fault := range []faultproxy.RangeFault{faultproxy.ShortRange, faultproxy.WrongRange, faultproxy.WholeObject} {
		t.Run(fmt.Sprint(fault), func(t *testing.T) {
			c, b, p := faultyCache(t)
			data, d := castest.Blob(17, 4*testChunk)
			castest.MustPut(t, b, d, data)
			list, ld := chunkListOf(t, data)
			part, err := c.OpenPartial(d, ld, list, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer part.Close()
			p.Set(blobsOnly(faultproxy.Plan{BadRange: 1, RangeFault: fault}))
			got, err := readPartial(part, 2*testChunk+3, 5)
			if fault == faultproxy.WholeObject {
				// The object from its start: the first chunk's length of
				// it is chunk 0, not chunk 2.
				if !errors.Is(err, opm.ErrIntegrity) {
					t.Fatalf("read with the whole object for a range: %v, want an integrity error", err)
				}
			} else if err == nil {
				t.Fatalf("read with a bad range succeeded: %q", got)
			}
			p.Off()
			got, err = readPartial(part, 2*testChunk+3, 5)
			if err != nil || !bytes.Equal(got, data[2*testChunk+3:2*testChunk+8]) {
				t.Fatalf("the same read with good ranges: %v", err)
			}
		})
	}
}

func TestPartialSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	data, d := castest.Blob(18, 40*testChunk)
	list, ld := chunkListOf(t, data)
	bucket := rawBucket(t, d, data)
	open := func() (*cas.Cache, *cas.Index) {
		c, _, idx := openStoreAt(t, dir, bucket)
		return c, idx
	}
	c, idx := open()
	part, err := c.OpenPartial(d, ld, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readPartial(part, 0, 20*testChunk); err != nil {
		t.Fatal(err)
	}
	part.Close()
	idx.Close()

	c, idx = open()
	defer idx.Close()
	part, err = c.OpenPartial(d, ld, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	if got, err := readPartial(part, 0, 20*testChunk); err != nil || !bytes.Equal(got, data[:20*testChunk]) {
		t.Fatalf("read of the chunks kept: %v", err)
	}
	if n := part.Fetches(); n != 0 {
		t.Fatalf("chunks fetched before the restart were fetched again: %d ranged GETs", n)
	}
	// Another list for the same blob does not share the chunks.
	other := *list
	other.Chunks = append([]digest.Digest(nil), list.Chunks...)
	other.Chunks[0] = digest.FromString("x")
	_, old, _ := other.Encode()
	if _, err := c.OpenPartial(d, old, &other, 0); !errors.Is(err, opm.ErrConflict) {
		t.Fatalf("a second list for a blob being read: %v, want a conflict", err)
	}
}

func TestPartialReadAhead(t *testing.T) {
	c, b, _ := faultyCache(t)
	data, d := castest.Blob(19, 12*testChunk)
	castest.MustPut(t, b, d, data)
	list, ld := chunkListOf(t, data)
	part, err := c.OpenPartial(d, ld, list, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	// A random read fetches its chunk alone; a sequential one the chunks
	// after it, in GETs of 4 MiB (64 chunks of the tests' size): here the
	// six left, in one.
	if _, err := readPartial(part, 5*testChunk, 10); err != nil {
		t.Fatal(err)
	}
	if n := part.Fetches(); n != 1 {
		t.Fatalf("a random read sent %d ranged GETs, want 1", n)
	}
	if _, err := readPartial(part, 5*testChunk+10, 10); err != nil {
		t.Fatal(err)
	}
	opmtest.Eventually(t, "chunks 6–11 read ahead", func() error {
		if n := part.Fetches(); n != 2 {
			return fmt.Errorf("%d ranged GETs", n)
		}
		return nil
	})
	if got, err := readPartial(part, 6*testChunk, 6*testChunk); err != nil || !bytes.Equal(got, data[6*testChunk:]) {
		t.Fatalf("read of the chunks read ahead: %v", err)
	}
	if n := part.Fetches(); n != 2 {
		t.Fatalf("reading the chunks read ahead sent %d more ranged GETs", n-2)
	}
}

func TestPartialOpenCloseRace(t *testing.T) {
	// Readers open, read and close the same blob over and over: a reader
	// opening it while the last one closes it must never see a chunk
	// recorded as present whose bytes are not there.
	ctx := context.Background()
	dir := t.TempDir()
	data, d := castest.Blob(20, 16*testChunk)
	list, ld := chunkListOf(t, data)
	idx, err := cas.OpenIndex(ctx, filepath.Join(dir, "index"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	l, err := cas.OpenLocal(filepath.Join(dir, "blobs"), idx)
	if err != nil {
		t.Fatal(err)
	}
	c := cas.NewCache(l, rawBucket(t, d, data))
	const readers, rounds = 4, 40
	bar := opmtest.NewBarrier(readers)
	errs := make(chan error, readers)
	for r := range readers {
		go func() {
			bar.Wait()
			for i := range rounds {
				part, err := c.OpenPartial(d, ld, list, 0)
				if err != nil {
					errs <- err
					return
				}
				// Each round reads a chunk it or another reader read
				// before, and one new, never all 16 (no promotion).
				off := int64((r+i)%14) * testChunk
				got, err := readPartial(part, off+testChunk/2, testChunk)
				part.Close()
				if err == nil && !bytes.Equal(got, data[off+testChunk/2:off+testChunk/2+testChunk]) {
					err = fmt.Errorf("reader %d round %d: wrong bytes at %d", r, i, off+testChunk/2)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestPartialReadAheadIsBounded: however many sequential reads ask, the
// chunks fetched ahead of a reader stay within readAhead GETs of a span
// each (they ran away: every read of 128 KiB started readAhead more GETs
// past those in flight, so a sequential read of a big file had hundreds of
// GETs in flight, competing with the one the reader waited for).
func TestPartialReadAheadIsBounded(t *testing.T) {
	const span = 64 // chunks of the tests' size in a GET of 4 MiB
	data, d := castest.Blob(20, (1+10*span)*testChunk)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	defer release()
	stalled := &gatedStore{Store: rawBucket(t, d, data), gate: gate}
	c := cas.NewCache(openLocal(t, nil), stalled)
	defer c.Close()
	list, ld := chunkListOf(t, data)
	part, err := c.OpenPartial(d, ld, list, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	// Chunk 0 (a random read: no read-ahead), then 20 sequential reads
	// in it, each asking for read-ahead while the GETs ahead are stalled.
	stalled.open.Store(true)
	if _, err := readPartial(part, 0, 10); err != nil {
		t.Fatal(err)
	}
	stalled.open.Store(false)
	for i := range 20 {
		if _, err := readPartial(part, int64(10+10*i), 10); err != nil {
			t.Fatal(err)
		}
	}
	opmtest.Eventually(t, "two GETs ahead stalled", func() error {
		if n := stalled.waiting.Load(); n < 2 {
			return fmt.Errorf("%d stalled", n)
		}
		return nil
	})
	release()
	// The chunks of the two GETs ahead (1 to 128): waited for, not asked
	// again (a read from inside a chunk is no sequential one).
	if got, err := readPartial(part, testChunk+1, 2*span*testChunk-1); err != nil || !bytes.Equal(got, data[testChunk+1:(1+2*span)*testChunk]) {
		t.Fatalf("read of the chunks read ahead: %v", err)
	}
	if n := part.Fetches(); n != 3 {
		t.Fatalf("20 sequential reads started %d GETs; want chunk 0's and two ahead (readAhead 2)", n)
	}
}

// gatedStore is a store whose ranged reads wait for gate unless open is
// set; waiting counts those waiting.
type gatedStore struct {
	cas.Store
	gate    chan struct{}
	open    atomic.Bool
	waiting atomic.Int64
}

func (s *gatedStore) OpenRange(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	if !s.open.Load() {
		s.waiting.Add(1)
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.OpenRange(ctx, d, off, n)
}
