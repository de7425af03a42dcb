package cas

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

const benchSize = 256 << 20

// benchFile writes benchSize pseudo-random bytes to a file in dir and reads
// it once so that it is in the page cache, as a file just built would be.
func benchFile(b *testing.B, dir string) string {
	b.Helper()
	path := filepath.Join(dir, "input")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, io.LimitReader(rand.NewChaCha8([32]byte{}), benchSize)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	hashFile(b, path)
	return path
}

func hashFile(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(sha256.New(), f); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIngestFile measures opm push of one file: IngestFile includes the
// fsyncs; NoSync is the read-hash-write pipeline alone (the difference is
// what waiting for the disk costs); SHA256 is hashing the file in-process,
// the floor for both.
func BenchmarkIngestFile(b *testing.B) {
	dir := b.TempDir()
	src := benchFile(b, dir)
	l, err := OpenLocal(filepath.Join(dir, "blobs"), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()

	b.Run("IngestFile", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			d, _, err := l.IngestFile(ctx, src)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := l.Delete(ctx, d); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("NoSync", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			f, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			s, err := l.stage(ctx, f, "", -1)
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.discard() // waits for the writeback started by stage
			b.StartTimer()
		}
	})
	b.Run("SHA256", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			hashFile(b, src)
		}
	})
}

// BenchmarkCopyOut measures opm pull of one blob into a new file; Copy is a
// plain io.Copy (copy_file_range, as cp does) of the same file, for
// comparison.
func BenchmarkCopyOut(b *testing.B) {
	dir := b.TempDir()
	src := benchFile(b, dir)
	l, err := OpenLocal(filepath.Join(dir, "blobs"), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	d, _, err := l.IngestFile(ctx, src)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out")

	run := func(b *testing.B, copyTo func(dst *os.File) error) {
		b.SetBytes(benchSize)
		for b.Loop() {
			dst, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			if err := copyTo(dst); err != nil {
				b.Fatal(err)
			}
			if err := dst.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.Remove(out)
			b.StartTimer()
		}
	}
	b.Run("CopyOut", func(b *testing.B) {
		run(b, func(dst *os.File) error { return l.CopyOut(ctx, d, dst) })
	})
	b.Run("Copy", func(b *testing.B) {
		run(b, func(dst *os.File) error {
			f, err := os.Open(l.Path(d))
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(dst, f)
			return err
		})
	})
}
