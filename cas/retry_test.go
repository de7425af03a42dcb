package cas_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/faultproxy"
)

// fastRetry is the default number of tries with short waits.
var fastRetry = cas.Retry{Attempts: 5, Base: time.Millisecond, Max: 4 * time.Millisecond}

// faultyCache is a Cache over an S3-protocol bucket (gofakes3) reached
// through a fault-injecting proxy.
func faultyCache(t *testing.T) (*cas.Cache, *cas.Bucket, *faultproxy.Proxy) {
	t.Helper()
	p, url := faultproxy.StartS3(t)
	b := openBucket(t, url)
	b.Retry = fastRetry
	c := cas.NewCache(openLocal(t, nil), b)
	t.Cleanup(func() { c.Close() })
	return c, b, p
}

// blobsOnly covers the GETs and HEADs of blobs; the faults come from the
// caller's fields.
func blobsOnly(p faultproxy.Plan) faultproxy.Plan {
	p.Prefix = "blobs/"
	return p
}

func TestRetryFetchAfterErrors(t *testing.T) {
	c, b, p := faultyCache(t)
	data, d := castest.Blob(1, 200_000)
	castest.MustPut(t, b, d, data)

	before := p.Stats()
	p.Set(blobsOnly(faultproxy.Plan{Error: 1, Limit: 3}))
	if err := c.Fetch(context.Background(), d); err != nil {
		t.Fatalf("Fetch after 3 server errors (5 tries allowed): %v", err)
	}
	castest.MustRead(t, c.Local(), d, data)
	s := p.Stats().Sub(before)
	if s.Errors != 3 || s.Covered != 4 {
		t.Fatalf("proxy: %v, %d requests of blobs; want 3 errors and 4 requests (3 failed, 1 good)", s, s.Covered)
	}
}

func TestRetryAlwaysCorrupt(t *testing.T) {
	c, b, p := faultyCache(t)
	data, d := castest.Blob(2, 100_000)
	castest.MustPut(t, b, d, data)

	before := p.Stats()
	p.Set(blobsOnly(faultproxy.Plan{Corrupt: 1, Seed: 7}))
	err := c.Fetch(context.Background(), d)
	if !errors.Is(err, opm.ErrIntegrity) {
		t.Fatalf("Fetch of an always corrupted body: %v, want an integrity error", err)
	}
	if !strings.Contains(err.Error(), "after 5 attempts") || !strings.Contains(err.Error(), d.String()) {
		t.Errorf("error %q does not name the blob and the attempts", err)
	}
	if c.Local().Has(d) {
		t.Fatal("corrupted bytes were stored")
	}
	if s := p.Stats().Sub(before); s.Corrupted != 5 {
		t.Fatalf("proxy: %v; want 5 corrupted bodies (one per try)", s)
	}
	// Reading through the cache fails the same way and serves nothing.
	if got, err := castest.ReadAll(c, d); !errors.Is(err, opm.ErrIntegrity) || len(got) != 0 {
		t.Fatalf("read: %d bytes, %v; want no bytes and an integrity error", len(got), err)
	}

	p.Off()
	castest.MustRead(t, c, d, data)
}

func TestRetryTruncated(t *testing.T) {
	c, b, p := faultyCache(t)
	data, d := castest.Blob(3, 300_000)
	castest.MustPut(t, b, d, data)

	before := p.Stats()
	p.Set(blobsOnly(faultproxy.Plan{Truncate: 1, Limit: 2, Seed: 3}))
	if err := c.Fetch(context.Background(), d); err != nil {
		t.Fatalf("Fetch after 2 bodies cut short: %v", err)
	}
	castest.MustRead(t, c.Local(), d, data)
	if s := p.Stats().Sub(before); s.Truncated != 2 {
		t.Fatalf("proxy: %v; want 2 truncated bodies", s)
	}

	// Always cut: a clear transport error, not an integrity one, and nothing stored.
	data2, d2 := castest.Blob(4, 300_000)
	castest.MustPut(t, b, d2, data2)
	p.Set(blobsOnly(faultproxy.Plan{Truncate: 1, Seed: 4}))
	err := c.Fetch(context.Background(), d2)
	if err == nil || errors.Is(err, opm.ErrIntegrity) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Fetch of an always truncated body: %v; want an unexpected EOF", err)
	}
	if !strings.Contains(err.Error(), "fetch from bucket failed after 5 attempts") {
		t.Errorf("error %q does not say the attempts", err)
	}
	if c.Local().Has(d2) {
		t.Fatal("a truncated body was stored")
	}
}

func TestRetryNotFoundIsNotRetried(t *testing.T) {
	c, b, p := faultyCache(t)
	_, d := castest.Blob(5, 1000)
	p.Set(blobsOnly(faultproxy.Plan{})) // count, inject nothing
	before := p.Stats()
	if err := c.Fetch(context.Background(), d); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("Fetch of a missing blob: %v", err)
	}
	if _, err := b.Stat(context.Background(), d); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("Stat of a missing blob: %v", err)
	}
	if err := b.Delete(context.Background(), d); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("Delete of a missing blob: %v", err)
	}
	// One request each: GET, HEAD, and a HEAD before the DELETE (gocloud
	// checks that the key exists, as S3 answers 204 either way).
	if s := p.Stats().Sub(before); s.Covered != 3 {
		t.Fatalf("%d requests for a missing blob's Fetch, Stat and Delete; want 3 (no retries)", s.Covered)
	}
}

func TestRetryBucketCalls(t *testing.T) {
	_, b, p := faultyCache(t)
	ctx := context.Background()
	data, d := castest.Blob(6, 50_000)

	// Put: the existence check and the upload both meet errors.
	p.Set(blobsOnly(faultproxy.Plan{Error: 1, Limit: 3}))
	if err := b.Put(ctx, d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put through 3 errors: %v", err)
	}
	// The upload alone: retried by the S3 SDK with the bucket's policy.
	data2, d2 := castest.Blob(7, 50_000)
	before := p.Stats()
	p.Set(blobsOnly(faultproxy.Plan{Method: "PUT", Error: 1, Limit: 2}))
	if err := b.Put(ctx, d2, int64(len(data2)), bytes.NewReader(data2)); err != nil {
		t.Fatalf("Put through 2 failed uploads: %v", err)
	}
	if s := p.Stats().Sub(before); s.Errors != 2 {
		t.Fatalf("proxy: %v; want 2 failed uploads", s)
	}
	p.Off()
	castest.MustRead(t, b, d2, data2)
	data3, d3 := castest.Blob(8, 50_000)
	before = p.Stats()
	p.Set(blobsOnly(faultproxy.Plan{Method: "PUT", Error: 1}))
	if err := b.Put(ctx, d3, int64(len(data3)), bytes.NewReader(data3)); err == nil {
		t.Fatal("Put under unending upload errors succeeded")
	}
	if s := p.Stats().Sub(before); s.Errors != 5 {
		t.Fatalf("proxy: %v; want 5 tries of the upload", s)
	}
	p.Off()
	if _, err := b.Stat(ctx, d3); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("after failed uploads: %v, want not found", err)
	}

	p.Set(blobsOnly(faultproxy.Plan{Error: 1, Limit: 2}))
	if n, err := b.Stat(ctx, d); err != nil || n != int64(len(data)) {
		t.Fatalf("Stat through 2 errors: %d, %v", n, err)
	}
	p.Set(blobsOnly(faultproxy.Plan{Error: 1, Limit: 2}))
	castest.MustRead(t, b, d, data) // Open retries until its first byte
	p.Set(blobsOnly(faultproxy.Plan{Error: 1, Limit: 2}))
	if err := b.Delete(ctx, d); err != nil {
		t.Fatalf("Delete through 2 errors: %v", err)
	}
	p.Off()
	if _, err := b.Stat(ctx, d); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}

	// Unending errors: bounded, and the error says so.
	p.Set(blobsOnly(faultproxy.Plan{Error: 1}))
	before = p.Stats()
	_, err := b.Stat(ctx, d)
	if err == nil || errors.Is(err, opm.ErrNotFound) || !strings.Contains(err.Error(), "after 5 attempts") {
		t.Fatalf("Stat under unending errors: %v", err)
	}
	if s := p.Stats().Sub(before); s.Errors != 5 {
		t.Fatalf("proxy: %v; want 5 tries", s)
	}

	// A cancelled caller is not retried.
	p.Set(blobsOnly(faultproxy.Plan{Error: 1, Delay: 20 * time.Millisecond}))
	b.Retry = cas.Retry{Attempts: 5, Base: time.Second, Max: time.Second}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	before = p.Stats()
	if _, err := b.Stat(cctx, d); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat with a context ending during the backoff: %v, want the context's error", err)
	}
	if s := p.Stats().Sub(before); s.Covered != 1 {
		t.Fatalf("%d requests after the context ended during the first backoff; want 1", s.Covered)
	}
}

// Many blobs through a mix of faults: every one arrives intact, or (never,
// with 8 tries at these rates and this seed) fails clearly.
func TestRetryMixedFaults(t *testing.T) {
	c, b, p := faultyCache(t)
	c.Retry.Attempts = 8
	blobs := map[digest.Digest][]byte{}
	for i := range 20 {
		data, d := castest.Blob(uint64(100+i), 10_000+i*5_000)
		castest.MustPut(t, b, d, data)
		blobs[d] = data
	}
	before := p.Stats()
	p.Set(blobsOnly(faultproxy.Plan{Error: 0.15, Truncate: 0.1, Corrupt: 0.1, Seed: 42}))
	var verified int64
	for d, data := range blobs {
		if err := c.Fetch(context.Background(), d); err != nil {
			if errors.Is(err, opm.ErrIntegrity) && c.Local().Has(d) {
				t.Fatalf("%s: stored after an integrity failure", d)
			}
			t.Errorf("%s: %v", d, err)
			continue
		}
		castest.MustRead(t, c.Local(), d, data)
		verified += int64(len(data))
	}
	s := p.Stats().Sub(before)
	t.Logf("FAULTS: test=TestRetryMixedFaults %v bytes_verified=%d", s, verified)
	if s.Faults() == 0 {
		t.Fatal("no fault was injected")
	}
}
