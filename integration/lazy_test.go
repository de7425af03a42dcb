package integration

// Streaming lazy reads through the mount (docs/design.md §2): a big file
// that is not local is read chunk by chunk, each chunk fetched with a
// ranged GET and verified against the file's chunk list before a byte of
// it is served.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openpm/opm/internal/faultproxy"
	"github.com/openpm/opm/internal/opmtest"
)

// lazySetup is a publisher that pushed one package with a big file of
// chunks of 1 MiB through the proxy, and a follower with no blob local.
type lazySetup struct {
	*faultSetup
	src    string // the package's source directory
	big    []byte // big.bin
	digest string // big.bin's blob, hex
	list   string // its chunk list's digest
	key    string // its object key in the bucket
	home   string // the follower
}

func newLazySetup(t *testing.T, size int64) *lazySetup {
	t.Helper()
	s := &lazySetup{faultSetup: newFaultOrigin(t, 3)}
	s.src = t.TempDir()
	must(t, writeRandom(filepath.Join(s.src, "big.bin"), size, 77))
	must(t, writeRandom(filepath.Join(s.src, "small.txt"), 1000, 78))
	mustOpm(t, s.pub, "push", "acme/lazy/pkg:v1", s.src)
	var err error
	s.big, err = os.ReadFile(filepath.Join(s.src, "big.bin"))
	must(t, err)
	var files []struct {
		Path   string `json:"path"`
		Digest string `json:"digest"`
		Chunks string `json:"chunks"`
	}
	must(t, json.Unmarshal([]byte(mustOpm(t, s.pub, "files", "acme/lazy/pkg:v1", "--json").stdout), &files))
	for _, f := range files {
		if f.Path == "big.bin" {
			if f.Chunks == "" {
				t.Fatal("big.bin has no chunk list")
			}
			s.digest, s.list = strings.TrimPrefix(f.Digest, "sha256:"), f.Chunks
		}
	}
	s.key = "blobs/sha256/" + s.digest
	s.home = s.follower(t)
	return s
}

// pread reads n bytes at off of the file at path.
func pread(path string, off int64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, off)
	return buf[:got], err
}

func TestLazyMountReadsChunks(t *testing.T) {
	opmtest.RequireFUSE(t)
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"overlay", nil},                    // the kernel overlay over .opm/blobs
		{"fuse", []string{"OPM_OVERLAY=0"}}, // the FUSE tree, reads without an open
		{"fuse-open", []string{"OPM_OVERLAY=0", "OPM_FUSE_NOOPEN=0"}}, // opens with a handle
	} {
		t.Run(c.name, func(t *testing.T) { testLazyMountReadsChunks(t, c.env) })
	}
}

func testLazyMountReadsChunks(t *testing.T, env []string) {
	s := newLazySetup(t, 40<<20)
	mnt := mountDaemon(t, s.home, env...)
	big := filepath.Join(mnt, "acme/lazy/pkg/v1/big.bin")

	// A look into the package fetches the chunk lists of its big files.
	if _, err := os.ReadDir(filepath.Dir(big)); err != nil {
		t.Fatal(err)
	}
	opmtest.Eventually(t, "the chunk list fetched", func() error {
		_, err := os.Stat(blobPath(s.home, s.list))
		return err
	})

	// A read in the middle of the file: one ranged GET of the blob, never
	// the whole blob.
	s.proxy.Set(faultproxy.Plan{Prefix: s.key}) // count, inject nothing
	const off = 20<<20 + 12345
	got, err := pread(big, off, 4096)
	if err != nil || !bytes.Equal(got, s.big[off:off+4096]) {
		t.Fatalf("read 4 KiB at %d: %v (bytes equal: %v)", off, err, bytes.Equal(got, s.big[off:off+4096]))
	}
	if n := s.proxy.Stats().Covered; n != 1 {
		t.Fatalf("a 4 KiB read sent %d requests for the blob, want 1 ranged GET", n)
	}
	if blobs := localBlobs(t, s.home); len(blobs) > 2 {
		t.Fatalf("after one read the store holds whole blobs %v (want only the chunk list, and the small file's at most)", blobs)
	}
	if fi, err := os.Stat(filepath.Join(s.home, "blobs/partial", s.digest)); err != nil || fi.Size() != int64(len(s.big)) {
		t.Fatalf("partial file: %v, %v", fi, err)
	}

	// A chunk whose bytes are wrong at the bucket is EIO, never bytes, and
	// the daemon's log names the file.
	s.proxy.Set(faultproxy.Plan{Prefix: s.key, Corrupt: 1, Seed: 5})
	if got, err := pread(big, 4<<20, 100); !errors.Is(err, syscall.EIO) {
		log, _ := os.ReadFile(filepath.Join(s.home, "opm.log"))
		t.Fatalf("read of a corrupt chunk: %d bytes (right: %v, zero: %v), %v; want EIO; requests %v\n%s", len(got), bytes.Equal(got, s.big[4<<20:4<<20+100]), bytes.Equal(got, make([]byte, 100)), err, s.proxy.Stats(), log)
	}
	log, _ := os.ReadFile(filepath.Join(s.home, "opm.log"))
	named := false
	for _, l := range strings.Split(string(log), "\n") {
		named = named || strings.Contains(l, "read blob chunks") && strings.Contains(l, "acme/lazy/pkg:v1/big.bin")
	}
	if !named {
		t.Fatalf("the daemon's log does not name the file of the bad chunk:\n%.3000s", log)
	}

	// Faults off: the whole file reads right, and then the blob is whole
	// in the store, verified.
	s.proxy.Off()
	if got := sha256File(t, big); got != sha256File(t, filepath.Join(s.src, "big.bin")) {
		t.Fatalf("big.bin through the mount: sha256 %s", got)
	}
	opmtest.Eventually(t, "the blob promoted to a whole blob", func() error {
		if _, err := os.Stat(blobPath(s.home, "sha256:"+s.digest)); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(s.home, "blobs/partial", s.digest)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("partial file still there: %v", err)
		}
		return nil
	})
	unmountAndWait(t, s.home, mnt)
	_, bad, err := verifyBlobDir(filepath.Join(s.home, "blobs"))
	must(t, err)
	if len(bad) > 0 {
		t.Fatalf("blob files with wrong content: %v", bad)
	}
}

func TestLazyMountKeepsChunksAcrossRestart(t *testing.T) {
	opmtest.RequireFUSE(t)
	s := newLazySetup(t, 40<<20)
	// Sequential reads fetch one chunk ahead, no more: chunk 7 is never
	// fetched below.
	mustOpm(t, s.home, "config", "transfer.jobs", "1")
	mnt := mountDaemon(t, s.home)
	big := filepath.Join(mnt, "acme/lazy/pkg/v1/big.bin")
	if got, err := pread(big, 8<<20, 1<<20); err != nil || !bytes.Equal(got, s.big[8<<20:9<<20]) {
		t.Fatalf("read in chunk 2: %v", err)
	}
	unmountAndWait(t, s.home, mnt)

	// Every request for the blob fails now: the chunk read before the
	// restart is served from the partial file.
	s.proxy.Set(faultproxy.Plan{Prefix: s.key, Error: 1})
	mnt = mountDaemon(t, s.home)
	big = filepath.Join(mnt, "acme/lazy/pkg/v1/big.bin")
	if got, err := pread(big, 8<<20+100, 1000); err != nil || !bytes.Equal(got, s.big[8<<20+100:8<<20+1100]) {
		t.Fatalf("read of a chunk kept across the restart, with the bucket failing: %v", err)
	}
	if n := s.proxy.Stats().Covered; n != 0 {
		t.Fatalf("a chunk kept across the restart was asked of the bucket again (%d requests)", n)
	}
	if _, err := pread(big, 30<<20, 10); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a chunk never fetched, with the bucket failing: %v, want EIO", err)
	}
}

// TestCrashLazyRead SIGKILLs the daemon while two readers read a big file
// that is not local, chunk by chunk: one in sequential runs (read-ahead),
// one at random, each open closed again (the last close records the chunks
// present). Every read that succeeds returns the right bytes; after each
// kill the home checks out (opm fsck --read-data re-hashes every chunk the
// index records, and every whole blob); after the last, the file reads
// whole and right and becomes a whole blob.
func TestCrashLazyRead(t *testing.T) {
	opmtest.RequireFUSE(t)
	c := newCrash(t, "lazy", 4)
	// Above 64 MiB: the chunks present are saved while others are
	// being fetched (cas.saveEvery), not only at the last close.
	s := newLazySetup(t, 192<<20)
	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	t.Cleanup(func() { unmountAndWait(t, s.home, mnt) })
	big := filepath.Join(mnt, "acme/lazy/pkg/v1/big.bin")
	size := int64(len(s.big))
	for trial := range c.trials {
		// 192 MiB at 100 MB/s, a kill within 1.6 s: a trial fetches up to
		// 160 MiB, the next takes up what the last one kept.
		s.proxy.Set(faultproxy.Plan{Prefix: s.key, Bandwidth: 100e6, Delay: 2 * time.Millisecond})
		opmOK(t, s.home, nil, "mount", "--daemon", mnt)
		pid := mountStatus(t, mnt).PID

		var (
			mu     sync.Mutex
			killed bool
			reads  int
		)
		check := func(off int64, got []byte, err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && !errors.Is(err, io.EOF):
				if !killed {
					t.Errorf("trial %d (seed %d): read at %d failed before the daemon was killed: %v", trial, c.seed, off, err)
				}
			case !bytes.Equal(got, s.big[off:off+int64(len(got))]):
				t.Errorf("trial %d (seed %d): %d bytes read at %d are not the file's", trial, c.seed, len(got), off)
			default:
				reads++
			}
		}
		begin, stop := make(chan struct{}), make(chan struct{})
		stopped := func() bool {
			select {
			case <-stop:
				return true
			default:
				return false
			}
		}
		var wg sync.WaitGroup
		for reader := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(c.seed+uint64(trial), uint64(reader)))
				<-begin
				for !stopped() {
					f, err := os.Open(big)
					if err != nil {
						check(0, nil, err)
						continue
					}
					if reader == 0 { // a run of 8 MiB from a random chunk, 128 KiB at a time
						buf := make([]byte, 128<<10)
						for off := rng.Int64N(size>>20) << 20; off < size && !stopped(); off += int64(len(buf)) {
							n, err := f.ReadAt(buf, off)
							check(off, buf[:n], err)
							if err != nil || off%(8<<20) == 8<<20-int64(len(buf)) {
								break
							}
						}
					} else { // 4 KiB at a random place
						buf := make([]byte, 4096)
						off := rng.Int64N(size - int64(len(buf)))
						n, err := f.ReadAt(buf, off)
						check(off, buf[:n], err)
					}
					f.Close()
				}
			}()
		}
		close(begin)
		// The kill lands at a random moment (deliberately a sleep: the
		// moment is the test's input, not something waited for).
		time.Sleep(c.delay(1600 * time.Millisecond))
		mu.Lock()
		killed = true
		mu.Unlock()
		must(t, syscall.Kill(pid, syscall.SIGKILL))
		c.killed++
		gone := killedDaemonGone(s.home, mnt)
		close(stop)
		wg.Wait()
		if gone != nil {
			t.Fatalf("trial %d: %v", trial, gone)
		}
		partial, _ := os.Stat(filepath.Join(s.home, "blobs/partial", s.digest))
		t.Logf("trial %d: killed after %d good reads; partial file: %v", trial, reads, partial != nil)
		s.proxy.Off()
		c.checkAfterCrash(trial, homeUnderTest(s.home, s.blobs))
	}
	opmOK(t, s.home, nil, "mount", "--daemon", mnt)
	if got := sha256File(t, big); got != sha256File(t, filepath.Join(s.src, "big.bin")) {
		t.Fatalf("big.bin through the mount after the kills: sha256 %s", got)
	}
	opmtest.Eventually(t, "the blob promoted to a whole blob", func() error {
		_, err := os.Stat(blobPath(s.home, "sha256:"+s.digest))
		return err
	})
	unmountAndWait(t, s.home, mnt)
	c.checkRecovered(c.trials, homeUnderTest(s.home, s.blobs))
}
