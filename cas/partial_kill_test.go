package cas_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/opmtest"
)

// The blob of TestPartialSaveDuringFetchSurvivesKill: 66 chunks of 1 MiB,
// so that making 64 of them present (64 MiB, cas's saveEvery) saves the
// record while chunk 64 is half written.
const (
	killChunk  = 1 << 20
	killChunks = 66
	killHalf   = 64 // the chunk that is half written when the kill lands
)

func killBlob(t *testing.T) ([]byte, digest.Digest, *opm.ChunkList, digest.Digest) {
	data, d := castest.Blob(66, killChunks*killChunk)
	list, ld := chunkListSized(t, data, killChunk)
	return data, d, list, ld
}

// openStoreAt opens the store (index and local blobs) in dir, over remote.
func openStoreAt(t *testing.T, dir string, remote cas.Store) (*cas.Cache, *cas.Local, *cas.Index) {
	idx, err := cas.OpenIndex(context.Background(), filepath.Join(dir, "index"), 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := cas.OpenLocal(filepath.Join(dir, "blobs"), idx)
	if err != nil {
		t.Fatal(err)
	}
	return cas.NewCache(l, remote), l, idx
}

// TestPartialSaveDuringFetchSurvivesKill: the record of the chunks present
// is saved while other chunks are being written (every 64 MiB of new
// chunks); a SIGKILL right after such a save leaves a record that names
// only verified chunks — not the one half written — and the blob then
// reads right. The store runs in a child process (this test run again),
// killed for real.
func TestPartialSaveDuringFetchSurvivesKill(t *testing.T) {
	if dir := os.Getenv("OPM_TEST_PARTIAL_KILL_DIR"); dir != "" {
		partialKillChild(t, dir)
		return
	}
	ctx := context.Background()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPartialSaveDuringFetchSurvivesKill$", "-test.v")
	cmd.Env = append(os.Environ(), "OPM_TEST_PARTIAL_KILL_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var saved atomic.Bool
	var said strings.Builder
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			said.WriteString(sc.Text() + "\n")
			if sc.Text() == "saved" {
				saved.Store(true)
			}
		}
	}()
	waited := opmtest.Wait("the child to save the record of 64 chunks with chunk 64 half written", func() error {
		if !saved.Load() {
			return errors.New("not yet")
		}
		return nil
	})
	cmd.Process.Signal(syscall.SIGKILL)
	<-lines
	cmd.Wait()
	if waited != nil {
		t.Fatalf("%v\nchild's output:\n%s%s", waited, said.String(), stderr.String())
	}

	data, d, list, ld := killBlob(t)
	c, l, idx := openStoreAt(t, dir, rawBucket(t, d, data))
	defer idx.Close()
	parts, err := l.Partials()
	if err != nil || len(parts) != 1 {
		t.Fatalf("partial blobs after the kill: %v, %v", parts, err)
	}
	if parts[0].Chunks != killHalf {
		t.Fatalf("after the kill the record names %d chunks present; %d were verified (chunk %d was half written)", parts[0].Chunks, killHalf, killHalf)
	}
	if _, err := l.VerifyPartial(ctx, parts[0], list); err != nil {
		t.Fatalf("a chunk the record names is not on disk as verified: %v", err)
	}
	p, err := c.OpenPartial(d, ld, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got, err := readPartial(p, 0, int64(len(data))); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the blob read after the kill: %v (right bytes: %v)", err, bytes.Equal(got, data))
	}
	if n := p.Fetches(); n == 0 || n > 2 {
		t.Fatalf("the chunks not recorded took %d ranged GETs, want 1 or 2 (chunks %d and %d)", n, killHalf, killHalf+1)
	}
}

// partialKillChild half writes chunk 64 of the blob (the bucket sends half
// of it, then nothing), then makes chunks 0 to 63 present, which saves the
// record; it says "saved" once the index holds it and waits to be killed.
func partialKillChild(t *testing.T, dir string) {
	ctx := context.Background()
	data, d, list, ld := killBlob(t)
	reached := make(chan struct{})
	remote := &stallAt{Store: rawBucket(t, d, data), off: killHalf * killChunk, half: killChunk / 2, reached: reached}
	c, l, _ := openStoreAt(t, dir, remote)
	p, err := c.OpenPartial(d, ld, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	go p.Ensure(ctx, killHalf*killChunk, 1) // never returns
	<-reached
	if err := p.Ensure(ctx, 0, killHalf*killChunk); err != nil {
		t.Fatal(err)
	}
	err = opmtest.Wait("the record of the chunks present saved", func() error {
		parts, err := l.Partials()
		if err != nil {
			return err
		}
		if len(parts) != 1 || parts[0].Chunks < killHalf {
			return fmt.Errorf("partials: %+v", parts)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("saved")
	time.Sleep(time.Hour) // killed
}

// stallAt is a store whose ranged read from off sends half bytes, then
// stalls for ever (reached is closed when it does: the half has been
// written by the reader).
type stallAt struct {
	cas.Store
	off, half int64
	reached   chan struct{}
}

func (s *stallAt) OpenRange(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Store.OpenRange(ctx, d, off, n)
	if err != nil || off != s.off {
		return rc, err
	}
	return &stalling{rc: rc, left: s.half, reached: s.reached}, nil
}

type stalling struct {
	rc      io.ReadCloser
	left    int64
	reached chan struct{}
}

func (s *stalling) Read(b []byte) (int, error) {
	if s.left == 0 {
		close(s.reached)
		select {} // until the kill
	}
	n, err := s.rc.Read(b[:min(int64(len(b)), s.left)])
	s.left -= int64(n)
	return n, err
}

func (s *stalling) Close() error { return s.rc.Close() }
