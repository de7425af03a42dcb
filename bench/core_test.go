package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// BenchmarkVerify10kCommits: a reader verifying 10k new signed commits
// (gitmeta.VerifyHistory: each commit's SSH signature against its parent's
// allowed signers) against git walking the same commits (git rev-list
// --count), which verifies nothing. Goal: ≤ 2 s.
func BenchmarkVerify10kCommits(b *testing.B) {
	const n = 10000
	dir := b.TempDir()
	key := filepath.Join(dir, "key")
	run(b, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	repo, err := gitmeta.Init(filepath.Join(dir, "meta.git"))
	if err != nil {
		b.Fatal(err)
	}
	defer repo.Close()
	author := gitmeta.Signature{Name: "ci", Email: "ci@example.org", Signer: gitmeta.SigningKey(key, os.Getenv)}
	ctx := context.Background()
	start := time.Now()
	var first, head gitmeta.Hash
	for i := range n + 1 {
		change := gitmeta.Change{Path: fmt.Sprintf("bench/verify/repo/tags/v%d.json", i), Data: []byte("{}")}
		if i == 0 {
			change = gitmeta.Change{Path: layout.AllowedSigners, Data: []byte("ci@example.org namespaces=\"git\" " + string(pub))}
		}
		head, _, err = repo.Update(ctx, author, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
			return []gitmeta.Change{change}, gitmeta.Message{Subject: "change"}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			first = head
		}
	}
	b.Logf("setup: %d signed commits in %v", n+1, time.Since(start))
	check := gitmeta.TrustCheck{File: layout.AllowedSigners, Pin: ssh256(b, key), Verified: first, Name: "origin"}
	compare(b, "x-rev-list", nil, func() { run(b, nil, "git", "--git-dir", repo.Path(), "rev-list", "--count", head.String()) },
		nil, func() {
			res, err := repo.VerifyHistory(ctx, check, head)
			if err != nil || res.Commits != n {
				b.Fatalf("verify: %+v, %v", res, err)
			}
		})
}

// ssh256 is the SHA256 fingerprint of the key at path.
func ssh256(b *testing.B, path string) string {
	out, err := exec.Command("ssh-keygen", "-lf", path+".pub").Output()
	if err != nil {
		b.Fatal(err)
	}
	return strings.Fields(string(out))[1]
}

// BenchmarkSyncNoopSigned: a no-op opm sync of a reader that verifies its
// origin's signatures against one of an unsigned origin. Goal: ≤ 0.05 s.
func BenchmarkSyncNoopSigned(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	writeRandom(b, filepath.Join(src, "f.bin"), 4096, 8)
	key := filepath.Join(dir, "key")
	run(b, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	readers := map[bool]string{}
	for _, signed := range []bool{false, true} {
		side := fmt.Sprintf("%s/%v", dir, signed)
		origin, pub, reader := side+"/origin.git", side+"/pub", side+"/reader"
		run(b, nil, "git", "init", "-q", "--bare", origin)
		for _, home := range []string{pub, reader} {
			run(b, []string{"OPM_HOME=" + home}, opmBin, "remote", "add", "origin", "--meta", origin, "--blobs", "file://"+side+"/blobs?create_dir=1")
		}
		if signed {
			run(b, []string{"OPM_HOME=" + pub}, opmBin, "config", "signing-key", key)
			run(b, []string{"OPM_HOME=" + pub}, opmBin, "signers", "add", "ci@example.org", key+".pub")
		}
		run(b, []string{"OPM_HOME=" + pub}, opmBin, "push", "bench/sync/pkg:v1", src)
		run(b, []string{"OPM_HOME=" + reader}, opmBin, "sync")
		readers[signed] = reader
	}
	sync := func(home string) func() {
		return func() { run(b, []string{"OPM_HOME=" + home}, opmBin, "sync") }
	}
	compare(b, "x-unsigned", nil, sync(readers[false]), nil, sync(readers[true]))
}
