package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/daemon"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

// The mount benchmarks serve a home from this process (opmfs.Mount) and
// compare reading through the mount with reading the same bytes natively:
// the local store's blob file, or the pushed source tree.

// mountHome opens a home in dir, lets fill push into it, and mounts it.
func mountHome(b *testing.B, dir string, opts opmfs.Options, fill func(*registry.Registry)) (*registry.Registry, string) {
	b.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skipf("no FUSE: %v", err)
	}
	r, err := registry.Open(context.Background(), filepath.Join(dir, "home"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	if fill != nil {
		fill(r)
	}
	return r, mountAgain(b, r, dir, opts)
}

// unmountAtEnd detaches the mount at mnt when the benchmark ends (lazily:
// one that failed in the middle of a round may leave it mounted, with
// files open; not mounted is fine) and waits until its daemon has let home
// go.
func unmountAtEnd(b *testing.B, home, mnt string) {
	b.Cleanup(func() { unmountAndWait(b, home, mnt) })
}

// unmountAndWait detaches the mount at mnt (lazily; not mounted is fine)
// and waits until its daemon has let home go.
func unmountAndWait(b *testing.B, home, mnt string) {
	if err := opmfs.Unmount(mnt, true); err != nil && !errors.Is(err, syscall.EINVAL) {
		b.Logf("unmount %s: %v", mnt, err)
	}
	opmtest.Eventually(b, "the daemon of "+home+" to exit after the unmount of "+mnt, func() error {
		if daemon.Held(home) {
			return errors.New("a daemon still holds the home")
		}
		return nil
	})
}

func pushDir(b *testing.B, r *registry.Registry, ref string, paths ...string) {
	b.Helper()
	rf, err := opm.ParseReference(ref)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.Push(context.Background(), rf, paths, registry.PushOptions{}); err != nil {
		b.Fatal(err)
	}
}

// readAll reads a file sequentially in 1 MiB reads.
func readAll(b *testing.B, p string) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func dropCaches(b *testing.B) {
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Skipf("cannot drop caches: %v", err)
	}
}

// BenchmarkMountRead1GiB: sequential read of a 1 GiB file (1 MiB reads)
// with the page cache warm and cold (dropped before each run). Once it is
// pushed, the native file is made a hard link to the local store's blob
// file, so that native and the mount read the same blocks of the disk: two
// files of 1 GiB written apart read cold at speeds up to twice apart here,
// which is where they lie on the disk, not how they are read.
func BenchmarkMountRead1GiB(b *testing.B) {
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	native := filepath.Join(tree, "big.bin")
	writeRandom(b, native, 1<<30, 7)
	sides, r := treeSides(b, dir, "big", tree)
	p, err := r.Resolve(opm.Reference{Repository: opm.Repository{Namespace: "bench", Project: "big", Name: "tree"}, Tag: "v1"})
	if err != nil {
		b.Fatal(err)
	}
	blob := r.LocalPath(p.Manifest.Files()[0].Digest)
	if err := os.Remove(native); err != nil {
		b.Fatal(err)
	}
	if err := os.Link(blob, native); err != nil {
		b.Fatal(err)
	}
	read := func(root string) { readAll(b, filepath.Join(root, "big.bin")) }
	b.Run("warm", func(b *testing.B) { compareSides(b, sides, nil, read) })
	b.Run("cold", func(b *testing.B) { compareSides(b, sides, func(string) { dropCaches(b) }, read) })
}

// manyFiles is the size of the many-files package.
const manyFiles = 50000

// writeManyFiles writes a package source of manyFiles small files in 500
// directories.
func writeManyFiles(b *testing.B, dir string) string {
	src := filepath.Join(dir, "src")
	for i := range manyFiles {
		writeRandom(b, filepath.Join(src, fmt.Sprintf("d%03d", i%500), fmt.Sprintf("f%05d.txt", i)), int64(100+i%3000), uint64(i))
	}
	return src
}

// sh runs a shell command line in dir.
func sh(b *testing.B, dir, script string) {
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// BenchmarkMount50kFiles: find, ls -lR and cat of every file of a package
// of many small files (see manyFiles).
func BenchmarkMount50kFiles(b *testing.B) {
	dir := b.TempDir()
	sides, _ := treeSides(b, dir, "many", writeManyFiles(b, dir))
	for _, c := range []struct{ name, script string }{
		{"find", "find . > /dev/null"},
		{"ls-lR", "ls -lR > /dev/null"},
		{"cat", "find . -type f -print0 | xargs -0 cat > /dev/null"},
	} {
		b.Run(c.name, func(b *testing.B) { compareSides(b, sides, nil, shIn(b, 1, c.script)) })
	}
}

// The scale of BenchmarkMountScale: scaleRepos repositories of scaleTags
// tags of scaleFiles files each.
const (
	scaleRepos = 10
	scaleTags  = 10000
	scaleFiles = 10
)

// writeScaleRegistry writes the metadata of a registry of scaleRepos ×
// scaleTags tags of scaleFiles files (1M files) into meta as one commit,
// with git fast-import. The manifests cycle through 1000 variants; their
// blobs exist nowhere (listing and stat never fetch).
func writeScaleRegistry(b *testing.B, meta string) {
	b.Helper()
	variants := make([][]byte, 1000)
	for v := range variants {
		files := make([]opm.File, scaleFiles)
		for j := range files {
			files[j] = opm.File{Path: fmt.Sprintf("dir%d/file%02d.dat", j%3, j), Mode: 0o644, Size: int64(1000 + v*scaleFiles + j),
				Digest: digest.FromString(fmt.Sprintf("%d/%d", v, j))}
		}
		m, err := opm.NewPackage(files, map[string]string{opm.AnnotationCreated: "2026-01-01T00:00:00Z"})
		if err != nil {
			b.Fatal(err)
		}
		if variants[v], _, err = m.Encode(); err != nil {
			b.Fatal(err)
		}
	}
	cmd := exec.Command("git", "-C", meta, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(in)
	for v, body := range variants {
		fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n%s\n", v+1, len(body), body)
	}
	fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@example.org> 1767225600 +0000\ndata 15\nscale registry\n")
	for repo := range scaleRepos {
		for tag := range scaleTags {
			r := opm.Repository{Namespace: "bench", Project: fmt.Sprintf("p%02d", repo), Name: "data"}
			fmt.Fprintf(w, "M 100644 :%d %s\n", (repo*scaleTags+tag)%len(variants)+1, layout.TagPath(r, fmt.Sprintf("v1.%d", tag)))
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
}

// vmHWM is the peak resident set of a process, in bytes.
func vmHWM(b *testing.B, pid int) int64 { return procStatusBytes(b, pid, "VmHWM") }

// vmRSS is the resident set of a process, in bytes.
func vmRSS(b *testing.B, pid int) int64 { return procStatusBytes(b, pid, "VmRSS") }

// procStatusBytes is a size field (in kB) of /proc/PID/status, in bytes.
func procStatusBytes(b *testing.B, pid int, field string) int64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// BenchmarkMountScale: a registry of 100k tags and 1M files (see
// writeScaleRegistry). Each round drops the page cache, starts a fresh
// `opm mount --daemon`, and times it until ready, then a cold `ls` of a
// repository of 10k tags and `ls -l` of it; it reports the medians and the
// daemon's peak RSS (VmHWM). Goals: ready < 2 s, RSS < 500 MB, ls < 0.2 s.
func BenchmarkMountScale(b *testing.B) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skipf("no FUSE: %v", err)
	}
	dir := b.TempDir()
	home := filepath.Join(dir, "home")
	r, err := registry.Open(context.Background(), home)
	if err != nil {
		b.Fatal(err)
	}
	meta := filepath.Join(r.Home(), "meta.git")
	r.Close()
	start := time.Now()
	writeScaleRegistry(b, meta)
	b.Logf("registry of %d tags, %d files written in %v", scaleRepos*scaleTags, scaleRepos*scaleTags*scaleFiles, time.Since(start))
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	unmountAtEnd(b, home, mnt)
	repo := filepath.Join(mnt, "bench/p00/data")
	var ready, ls, lsl []time.Duration
	var rss int64
	for range rounds {
		dropCaches(b)
		ready = append(ready, timed(nil, func() { run(b, []string{"OPM_HOME=" + home}, opmBin, "mount", "--daemon", mnt) }))
		ls = append(ls, timed(nil, func() {
			ents, err := os.ReadDir(repo)
			if err != nil || len(ents) != scaleTags {
				b.Fatalf("ls %s: %d entries, %v", repo, len(ents), err)
			}
		}))
		lsl = append(lsl, timed(nil, func() { sh(b, repo, "ls -l > /dev/null") }))
		var st opmfs.Status
		if body, err := os.ReadFile(filepath.Join(mnt, ".opm/status")); err != nil || json.Unmarshal(body, &st) != nil {
			b.Fatalf("status: %v %s", err, body)
		}
		rss = max(rss, vmHWM(b, st.PID))
		run(b, []string{"OPM_HOME=" + home}, opmBin, "umount", mnt)
	}
	b.ReportMetric(median(ready).Seconds(), "ready-s")
	b.ReportMetric(median(ls).Seconds(), "ls-s")
	b.ReportMetric(median(lsl).Seconds(), "ls-l-s")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
	b.Logf("ready %v, cold ls of %d tags %v, ls -l %v, peak RSS %d MB", ready, scaleTags, ls, lsl, rss>>20)
}

// BenchmarkMountWalk100kFiles: the daemon's peak RSS (VmHWM) when two tags
// of the 50k-file package (100k files in the mount) are walked with find,
// ls -lR and cat of every file, through the FUSE tree alone and with the
// kernel overlays, each in a fresh `opm mount --daemon`. Goal: < 200 MB.
func BenchmarkMountWalk100kFiles(b *testing.B) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skipf("no FUSE: %v", err)
	}
	dir := b.TempDir()
	src := writeManyFiles(b, dir)
	home := filepath.Join(dir, "home")
	r, err := registry.Open(context.Background(), home)
	if err != nil {
		b.Fatal(err)
	}
	pushDir(b, r, "bench/many/tree:v1", src+"/")
	if err := os.WriteFile(filepath.Join(src, "d000/extra.txt"), []byte("v2\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	pushDir(b, r, "bench/many/tree:v2", src+"/")
	r.Close()
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	unmountAtEnd(b, home, mnt)
	for _, c := range []struct{ name, env string }{{"fuse", "OPM_OVERLAY=0"}, {"overlay", "OPM_OVERLAY=1"}} {
		env := []string{"OPM_HOME=" + home, c.env}
		run(b, env, opmBin, "mount", "--daemon", mnt)
		for _, tag := range []string{"v1", "v2"} {
			pkg := filepath.Join(mnt, "bench/many/tree", tag)
			waitReadPath(b, pkg)
			sh(b, pkg, "find . > /dev/null; ls -lR > /dev/null; find . -type f -print0 | xargs -0 cat > /dev/null")
		}
		st, err := opmfs.ReadStatus(mnt)
		if err != nil {
			b.Fatal(err)
		}
		rss := vmHWM(b, st.PID)
		run(b, env, opmBin, "umount", mnt)
		b.ReportMetric(float64(rss)/(1<<20), c.name+"-rss-MB")
		b.Logf("%s (read path %s): peak RSS %d MB", c.name, st.ReadPath, rss>>20)
	}
}
