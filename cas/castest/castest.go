// Package castest is the conformance suite every cas.Store must pass, and
// fixtures for other packages' tests: an in-process S3-protocol server and
// deterministic blob contents.
package castest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
)

// Suite is the conformance suite of a cas.Store.
type Suite struct {
	// New returns a new, empty store. The suite closes it.
	New func(t *testing.T) cas.Store
	// Corrupt, if set, changes the stored bytes of d behind the back of the
	// store most recently returned by New. Without it the corruption test is
	// skipped.
	Corrupt func(t *testing.T, d digest.Digest)
	// Kill, if set, kills the server behind the store most recently
	// returned by New (as a crash would). The test that calls it runs last.
	// Without it (a store with no server) that test is skipped.
	Kill func(t *testing.T)
}

// RunSuite runs the suite without the corruption test.
func RunSuite(t *testing.T, newStore func(t *testing.T) cas.Store) {
	Suite{New: newStore}.Run(t)
}

// Blob returns n deterministic pseudo-random bytes (seeded by seed) and their
// digest.
func Blob(seed uint64, n int) ([]byte, digest.Digest) {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}).Read(b)
	return b, digest.FromBytes(b)
}

// Run runs every test of the suite as a subtest of t.
func (s Suite) Run(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st cas.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"NotFound", testNotFound},
		{"WrongDigest", testWrongDigest},
		{"WrongSize", testWrongSize},
		{"PutTwice", testPutTwice},
		{"ConcurrentPut", testConcurrentPut},
		{"Delete", testDelete},
		{"InvalidDigest", testInvalidDigest},
		{"RangedRead", testRangedRead},
		{"DeletedDuringRead", testDeletedDuringRead},
		{"ConditionalWrite", testConditionalWrite},
		{"Corrupted", func(t *testing.T, st cas.Store) { s.testCorrupted(t, st) }},
		{"ServerDies", func(t *testing.T, st cas.Store) { s.testServerDies(t, st) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := s.New(t)
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, st)
		})
	}
}

// MustPut stores b under d or fails the test.
func MustPut(t testing.TB, st cas.Pusher, d digest.Digest, b []byte) {
	t.Helper()
	if err := st.Put(context.Background(), d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatalf("Put %s: %v", d, err)
	}
}

// ReadAll opens d and reads it to the end.
func ReadAll(st cas.Fetcher, d digest.Digest) ([]byte, error) {
	rc, err := st.Open(context.Background(), d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// MustRead reads d and checks it equals want.
func MustRead(t testing.TB, st cas.Fetcher, d digest.Digest, want []byte) {
	t.Helper()
	got, err := ReadAll(st, d)
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %s: got %d bytes, want %d (content differs)", d, len(got), len(want))
	}
}

func wantErr(t *testing.T, op string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %q", op, err, target)
	}
}

// wantAbsent checks that d is not visible.
func wantAbsent(t *testing.T, st cas.Store, d digest.Digest) {
	t.Helper()
	_, err := st.Stat(context.Background(), d)
	wantErr(t, "Stat", err, opm.ErrNotFound)
	_, err = st.Open(context.Background(), d)
	wantErr(t, "Open", err, opm.ErrNotFound)
	_, err = st.OpenRange(context.Background(), d, 1, 10)
	wantErr(t, "OpenRange", err, opm.ErrNotFound)
}

func testRoundTrip(t *testing.T, st cas.Store) {
	ctx := context.Background()
	for i, n := range []int{0, 1, 3<<20 + 7} {
		b, d := Blob(uint64(i), n)
		MustPut(t, st, d, b)
		size, err := st.Stat(ctx, d)
		if err != nil {
			t.Fatalf("Stat %d-byte blob: %v", n, err)
		}
		if size != int64(n) {
			t.Fatalf("Stat: got size %d, want %d", size, n)
		}
		MustRead(t, st, d, b)
	}
}

func testNotFound(t *testing.T, st cas.Store) {
	_, d := Blob(1, 100)
	wantAbsent(t, st, d)
	wantErr(t, "Delete", st.Delete(context.Background(), d), opm.ErrNotFound)
}

func testWrongDigest(t *testing.T, st cas.Store) {
	b, _ := Blob(1, 1000)
	_, d := Blob(2, 1000)
	err := st.Put(context.Background(), d, int64(len(b)), bytes.NewReader(b))
	wantErr(t, "Put with the wrong digest", err, opm.ErrIntegrity)
	wantAbsent(t, st, d)
}

func testWrongSize(t *testing.T, st cas.Store) {
	b, d := Blob(1, 1000)
	for _, size := range []int64{int64(len(b)) + 1, int64(len(b)) - 1} {
		err := st.Put(context.Background(), d, size, bytes.NewReader(b))
		wantErr(t, "Put with the wrong size", err, opm.ErrIntegrity)
		wantAbsent(t, st, d)
	}
	err := st.Put(context.Background(), d, -1, bytes.NewReader(b))
	wantErr(t, "Put with a negative size", err, opm.ErrInvalid)
}

func testPutTwice(t *testing.T, st cas.Store) {
	b, d := Blob(1, 5000)
	MustPut(t, st, d, b)
	MustPut(t, st, d, b)
	MustRead(t, st, d, b)
	err := st.Put(context.Background(), d, int64(len(b))+1, bytes.NewReader(b))
	wantErr(t, "Put of a present blob with another size", err, opm.ErrIntegrity)
	MustRead(t, st, d, b)
}

// testConditionalWrite: a blob sent without a lookup is stored once, in one
// request; sent again, the store refuses the write (one request, nothing
// stored); with a lookup, a blob the store has costs the lookup alone and
// its source is not read. For stores that say what they did and count
// their requests (cas.Bucket).
func testConditionalWrite(t *testing.T, st cas.Store) {
	type counting interface {
		cas.Storer
		Requests() int64
	}
	cs, ok := st.(counting)
	if !ok {
		t.Skip("the store does not count its requests")
	}
	ctx := context.Background()
	b, d := Blob(7, 4096)
	for i, want := range []bool{true, false} {
		before := cs.Requests()
		stored, err := cs.Store(ctx, d, int64(len(b)), bytes.NewReader(b), false)
		if err != nil || stored != want || cs.Requests()-before != 1 {
			t.Fatalf("send %d without a lookup: stored %v, %v, %d requests; want stored %v in 1 request",
				i+1, stored, err, cs.Requests()-before, want)
		}
	}
	before := cs.Requests()
	stored, err := cs.Store(ctx, d, int64(len(b)), iotest.ErrReader(errors.New("read")), true)
	if err != nil || stored || cs.Requests()-before != 1 {
		t.Fatalf("send with a lookup of a present blob: stored %v, %v, %d requests; want not stored, 1 request, no read",
			stored, err, cs.Requests()-before)
	}
	MustRead(t, st, d, b)
}

func testConcurrentPut(t *testing.T, st cas.Store) {
	b, d := Blob(1, 1<<20+3)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = st.Put(context.Background(), d, int64(len(b)), bytes.NewReader(b))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put %d: %v", i, err)
		}
	}
	MustRead(t, st, d, b)
}

func testDelete(t *testing.T, st cas.Store) {
	ctx := context.Background()
	b, d := Blob(1, 100)
	other, od := Blob(2, 100)
	MustPut(t, st, d, b)
	MustPut(t, st, od, other)
	if err := st.Delete(ctx, d); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAbsent(t, st, d)
	wantErr(t, "second Delete", st.Delete(ctx, d), opm.ErrNotFound)
	MustRead(t, st, od, other)
}

func testInvalidDigest(t *testing.T, st cas.Store) {
	ctx := context.Background()
	_, good := Blob(1, 10)
	hex := good.Encoded()
	for _, d := range []digest.Digest{
		"",
		"sha256:",
		"sha256:" + digest.Digest(hex[:63]),
		"sha256:" + digest.Digest(strings.ToUpper(hex)),
		"sha256:" + digest.Digest(hex) + "00",
		"sha512:" + digest.Digest(hex+hex),
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		digest.Digest(hex),
		"sha256:../../../../etc/passwd",
	} {
		_, err := st.Open(ctx, d)
		wantErr(t, "Open "+string(d), err, opm.ErrInvalid)
		_, err = st.OpenRange(ctx, d, 1, 1)
		wantErr(t, "OpenRange "+string(d), err, opm.ErrInvalid)
		_, err = st.Stat(ctx, d)
		wantErr(t, "Stat "+string(d), err, opm.ErrInvalid)
		wantErr(t, "Put "+string(d), st.Put(ctx, d, 0, strings.NewReader("")), opm.ErrInvalid)
		wantErr(t, "Delete "+string(d), st.Delete(ctx, d), opm.ErrInvalid)
	}
}

func (s Suite) testCorrupted(t *testing.T, st cas.Store) {
	if s.Corrupt == nil {
		t.Skip("store cannot be corrupted by the test")
	}
	b, d := Blob(1, 100_000)
	MustPut(t, st, d, b)
	s.Corrupt(t, d)
	_, err := ReadAll(st, d)
	wantErr(t, "read of a corrupted blob", err, opm.ErrIntegrity)
	// A store may drop (or repair) a blob found corrupt: another one.
	b, d = Blob(2, 100_000)
	MustPut(t, st, d, b)
	s.Corrupt(t, d)
	_, err = ReadRange(st, d, 0, -1)
	wantErr(t, "whole-range read of a corrupted blob", err, opm.ErrIntegrity)
}

// ReadRange reads a range of d with OpenRange.
func ReadRange(st cas.RangeFetcher, d digest.Digest, offset, length int64) ([]byte, error) {
	rc, err := st.OpenRange(context.Background(), d, offset, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func testRangedRead(t *testing.T, st cas.Store) {
	b, d := Blob(1, 3<<20+7)
	MustPut(t, st, d, b)
	n := int64(len(b))
	for _, r := range []struct{ off, length int64 }{
		{0, 10}, {100, 1000}, {1 << 20, 1 << 20}, {n - 5, 10}, {n - 5, 5}, {5, -1}, {n - 1, -1}, {0, -1}, {0, n}, {7, 0},
	} {
		got, err := ReadRange(st, d, r.off, r.length)
		if err != nil {
			t.Fatalf("OpenRange(%d, %d): %v", r.off, r.length, err)
		}
		end := n
		if r.length >= 0 {
			end = min(n, r.off+r.length)
		}
		if !bytes.Equal(got, b[r.off:end]) {
			t.Fatalf("OpenRange(%d, %d): got %d bytes, want %d (content differs)", r.off, r.length, len(got), end-r.off)
		}
	}
	for _, off := range []int64{-1, n + 1, n + 1<<20} {
		_, err := ReadRange(st, d, off, 10)
		wantErr(t, fmt.Sprintf("OpenRange(%d, 10) of a %d-byte blob", off, n), err, opm.ErrInvalid)
	}
	empty, ed := Blob(2, 0)
	MustPut(t, st, ed, empty)
	for _, r := range [][2]int64{{0, -1}, {0, 10}} {
		got, err := ReadRange(st, ed, r[0], r[1])
		if err != nil || len(got) != 0 {
			t.Fatalf("OpenRange(%d, %d) of the empty blob: %d bytes, %v", r[0], r[1], len(got), err)
		}
	}
}

// testDeletedDuringRead: a blob deleted while it is read either reads
// whole and right or fails; it is never served wrong or cut short, and it is
// gone afterwards.
func testDeletedDuringRead(t *testing.T, st cas.Store) {
	b, d := Blob(1, 8<<20+3)
	for _, whole := range []bool{true, false} {
		MustPut(t, st, d, b)
		var rc io.ReadCloser
		var err error
		if whole {
			rc, err = st.Open(context.Background(), d)
		} else {
			rc, err = st.OpenRange(context.Background(), d, 1, -1)
		}
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 1<<20)
		if _, err := io.ReadFull(rc, head); err != nil {
			t.Fatalf("first MiB: %v", err)
		}
		if err := st.Delete(context.Background(), d); err != nil {
			t.Fatalf("Delete during a read: %v", err)
		}
		rest, err := io.ReadAll(rc)
		rc.Close()
		want := b
		if !whole {
			want = b[1:]
		}
		if got := append(head, rest...); err == nil && !bytes.Equal(got, want) {
			t.Fatalf("read across a Delete (whole=%v) succeeded with %d bytes of %d, content differs", whole, len(got), len(want))
		}
		wantAbsent(t, st, d)
	}
}

// testServerDies: a read in flight when the server dies fails (never a
// short success), and so do calls made after it, none of them as
// opm.ErrNotFound (a dead server is not a missing blob).
func (s Suite) testServerDies(t *testing.T, st cas.Store) {
	if s.Kill == nil {
		t.Skip("store has no server to kill")
	}
	b, d := Blob(1, 32<<20)
	MustPut(t, st, d, b)
	rc, err := st.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 4096)); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	s.Kill(t)
	rest, err := io.ReadAll(rc)
	if err == nil {
		// The server had sent it all before it died: it must be all right.
		if len(rest) != len(b)-4096 {
			t.Fatalf("read across the server's death succeeded with %d bytes, want %d", 4096+len(rest), len(b))
		}
	}
	ctx := context.Background()
	_, err = st.Open(ctx, d)
	wantLive(t, "Open after the server died", err)
	_, err = st.OpenRange(ctx, d, 10, 10)
	wantLive(t, "OpenRange after the server died", err)
	_, err = st.Stat(ctx, d)
	wantLive(t, "Stat after the server died", err)
	other, od := Blob(2, 1000)
	wantLive(t, "Put after the server died", st.Put(ctx, od, int64(len(other)), bytes.NewReader(other)))
}

func wantLive(t *testing.T, op string, err error) {
	t.Helper()
	if err == nil || errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("%s: got %v, want an error that is not opm.ErrNotFound", op, err)
	}
}
