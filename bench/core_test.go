package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

// BenchmarkPush1GiB: opm push of one 1 GiB file (hash + store + commit, a
// fresh home each round) against coreutils sha256sum of the same file. Page
// cache warm for both.
func BenchmarkPush1GiB(b *testing.B) {
	dir := b.TempDir()
	file := filepath.Join(dir, "big.bin")
	writeRandom(b, file, 1<<30, 1)
	run(b, nil, "cat", file) // warm the page cache
	home := filepath.Join(dir, "home")
	compare(b, "x-sha256sum",
		nil, func() { run(b, nil, "sha256sum", file) },
		func() { os.RemoveAll(home); run(b, nil, "sync") },
		func() { run(b, []string{"OPM_HOME=" + home}, opmBin, "push", "bench/big/file:v1", file) })
}

// BenchmarkPush10kFiles: opm push of a directory of 10,000 files of 6 KiB
// (60 MiB in 100 directories) against cp -r of it. opm makes the files
// durable before it commits (two syncfs calls); cp -r leaves them in the
// page cache, so "cp-r+sync" (cp -r then sync) is reported too.
func BenchmarkPush10kFiles(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	for i := range 10000 {
		writeRandom(b, filepath.Join(src, fmt.Sprintf("d%02d", i%100), fmt.Sprintf("f%05d.bin", i)), 6<<10, uint64(i))
	}
	home, dst := filepath.Join(dir, "home"), filepath.Join(dir, "dst")
	prepOpm := func() { os.RemoveAll(home); run(b, nil, "sync") }
	pushOpm := func() { run(b, []string{"OPM_HOME=" + home}, opmBin, "push", "bench/small/files:v1", src) }
	prepCp := func() { os.RemoveAll(dst); run(b, nil, "sync") }
	b.Run("vs=cp-r", func(b *testing.B) {
		compare(b, "x-cp-r", prepCp, func() { run(b, nil, "cp", "-r", src, dst) }, prepOpm, pushOpm)
	})
	b.Run("vs=cp-r+sync", func(b *testing.B) {
		compare(b, "x-cp-r+sync", prepCp, func() { run(b, nil, "sh", "-c", "cp -r \"$0\" \"$1\" && sync", src, dst) }, prepOpm, pushOpm)
	})
}

// BenchmarkPull1GiB: opm pull of a 1 GiB package from the local store
// (verifying every byte) against cp of the blob file.
func BenchmarkPull1GiB(b *testing.B) {
	dir := b.TempDir()
	file := filepath.Join(dir, "big.bin")
	writeRandom(b, file, 1<<30, 2)
	home := filepath.Join(dir, "home")
	env := []string{"OPM_HOME=" + home}
	run(b, env, opmBin, "push", "bench/big/file:v1", file)
	out, cpOut := filepath.Join(dir, "out"), filepath.Join(dir, "cp.bin")
	compare(b, "x-cp",
		func() { os.Remove(cpOut); run(b, nil, "sync") }, func() { run(b, nil, "cp", file, cpOut) },
		func() { os.RemoveAll(out); run(b, nil, "sync") },
		func() { run(b, env, opmBin, "pull", "bench/big/file:v1", "-o", out) })
}

// BenchmarkTag100kTags: one more tag in a registry of 100,000 tags (10
// namespaces × 10 projects × 10 repositories × 100 tags, plus one
// repository of 10,000 tags). Reports the in-process metadata commit (the
// 50 ms goal) for both shapes, and the whole `opm tag` process against
// `git rev-parse` (the floor of any git CLI call) on the same repository.
func BenchmarkTag100kTags(b *testing.B) {
	home := filepath.Join(b.TempDir(), "home")
	ctx := context.Background()
	r, err := registry.Open(ctx, home)
	if err != nil {
		b.Fatal(err)
	}
	manifest := func(i int) []byte {
		m, err := opm.NewPackage([]opm.File{{Path: fmt.Sprintf("f%d", i), Mode: 0o644, Size: 0, Digest: opm.EmptyFileDigest}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		body, _, _ := m.Encode()
		return body
	}
	var changes []gitmeta.Change
	i := 0
	for ns := range 10 {
		for p := range 10 {
			for rp := range 10 {
				for t := range 100 {
					repo := opm.Repository{Namespace: fmt.Sprintf("ns%d", ns), Project: fmt.Sprintf("p%d", p), Name: fmt.Sprintf("r%d", rp)}
					changes = append(changes, gitmeta.Change{Path: layout.TagPath(repo, fmt.Sprintf("t%d", t)), Data: manifest(i)})
					i++
				}
			}
		}
	}
	big := opm.Repository{Namespace: "big", Project: "one", Name: "repo"}
	for t := range 10000 {
		changes = append(changes, gitmeta.Change{Path: layout.TagPath(big, fmt.Sprintf("t%d", t)), Data: manifest(i)})
		i++
	}
	start := time.Now()
	meta, err := gitmeta.Open(filepath.Join(r.Home(), "meta.git")) // the seed is written by git, not pushed
	if err != nil {
		b.Fatal(err)
	}
	defer meta.Close()
	if _, _, err := meta.Update(ctx, r.Author(ctx), func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return changes, gitmeta.Message{Subject: "seed 110k tags"}, nil
	}); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d tags in %v", len(changes), time.Since(start))

	commit := func(repo opm.Repository, n int) time.Duration {
		var ds []time.Duration
		for k := range n {
			src := opm.Reference{Repository: repo, Tag: "t1"}
			dst := opm.Reference{Repository: repo, Tag: fmt.Sprintf("new%d", k)}
			start := time.Now()
			if _, err := r.Tag(ctx, src, dst); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		return median(ds)
	}
	small := opm.Repository{Namespace: "ns5", Project: "p5", Name: "r5"}
	b.ReportMetric(float64(commit(small, 9).Microseconds())/1000, "ms-commit-100tag-repo")
	b.ReportMetric(float64(commit(big, 9).Microseconds())/1000, "ms-commit-10ktag-repo")
	r.Close()

	env := []string{"OPM_HOME=" + home}
	k := 0
	compare(b, "x-git-rev-parse",
		nil, func() { run(b, nil, "git", "-C", filepath.Join(home, "meta.git"), "rev-parse", "main") },
		func() { k++ },
		func() { run(b, env, opmBin, "tag", "ns1/p1/r1:t1", fmt.Sprintf("ns1/p1/r1:cli%d", k)) })
}

// BenchmarkPushSigned: opm push of a one-file package into a home that
// signs its commits with an ed25519 key (opm config signing-key) against
// the same push into a home that does not sign. The goal (signed metadata
// issue): signing adds at most 5 ms per push.
func BenchmarkPushSigned(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	writeRandom(b, filepath.Join(src, "f.bin"), 4096, 7)
	key := filepath.Join(dir, "key")
	run(b, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	plain, signed := filepath.Join(dir, "plain"), filepath.Join(dir, "signed")
	run(b, []string{"OPM_HOME=" + signed}, opmBin, "config", "signing-key", key)
	n := 0
	push := func(home string) func() {
		return func() {
			n++
			run(b, []string{"OPM_HOME=" + home}, opmBin, "push", fmt.Sprintf("bench/sign/pkg:v%d", n), src)
		}
	}
	compare(b, "x-unsigned", nil, push(plain), nil, push(signed))
}
