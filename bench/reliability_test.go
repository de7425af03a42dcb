package bench

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkFsckReadData: opm fsck --read-data of a home holding 512 MiB in
// 4 files of 128 MiB and 2,000 files of 4 KiB (the metadata walked, every
// named blob's size checked, every byte re-hashed) against sha256sum of the
// same blob files. Page cache warm for both.
func BenchmarkFsckReadData(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	for i := range 4 {
		writeRandom(b, filepath.Join(src, fmt.Sprintf("big%d.bin", i)), 128<<20, uint64(i))
	}
	for i := range 2000 {
		writeRandom(b, filepath.Join(src, "small", fmt.Sprintf("f%04d", i)), 4<<10, uint64(100+i))
	}
	home := filepath.Join(dir, "home")
	env := []string{"OPM_HOME=" + home}
	run(b, env, opmBin, "push", "bench/fsck/data:v1", src)
	blobs := filepath.Join(home, "blobs", "sha256")
	hashAll := func() { run(b, nil, "sh", "-c", `find "$0" -type f -print0 | xargs -0 sha256sum >/dev/null`, blobs) }
	hashAll() // warm the page cache
	compare(b, "x-sha256sum",
		nil, hashAll,
		nil, func() { run(b, env, opmBin, "fsck", "--read-data") })
}

// BenchmarkGC10kBlobs: opm gc of a home without a bucket in which 10,000
// blobs of 4 KiB are garbage (their tag removed) and 10,000 others are named,
// against removing exactly the garbage files with xargs rm. Each round
// starts from a fresh copy of the home.
func BenchmarkGC10kBlobs(b *testing.B) {
	dir := b.TempDir()
	template := filepath.Join(dir, "template")
	env := []string{"OPM_HOME=" + template}
	var garbage []string // blob files, relative to the home
	for k, name := range []string{"gone", "kept"} {
		src := filepath.Join(dir, name)
		for i := range 10000 {
			f := filepath.Join(src, fmt.Sprintf("d%02d", i%100), fmt.Sprintf("f%05d", i))
			writeRandom(b, f, 4<<10, uint64(k*100000+i))
			if name == "gone" {
				data, err := os.ReadFile(f)
				if err != nil {
					b.Fatal(err)
				}
				hex := fmt.Sprintf("%x", sha256.Sum256(data))
				garbage = append(garbage, filepath.Join("blobs", "sha256", hex[:2], hex))
			}
		}
		run(b, env, opmBin, "push", "bench/gc/"+name+":v1", src)
	}
	run(b, env, opmBin, "rm", "bench/gc/gone:v1")
	list := filepath.Join(dir, "garbage.txt")
	if err := os.WriteFile(list, []byte(strings.Join(garbage, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	fresh := func() {
		os.RemoveAll(home)
		run(b, nil, "cp", "-a", template, home)
		run(b, nil, "sync")
	}
	compare(b, "x-xargs-rm",
		fresh, func() { run(b, nil, "sh", "-c", `cd "$0" && xargs rm -- < "$1"`, home, list) },
		fresh, func() { run(b, []string{"OPM_HOME=" + home}, opmBin, "gc", "--grace", "0s", "--keep", "0s") })
	// The last round was opm's: the garbage is gone.
	if _, err := os.Stat(filepath.Join(home, garbage[0])); !os.IsNotExist(err) {
		b.Fatalf("garbage blob still there after opm gc: %v", err)
	}
}
