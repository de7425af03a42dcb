package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/layout"
)

func openHome(t *testing.T, dir string) *Registry {
	t.Helper()
	r, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func mustRef(t *testing.T, s string) opm.Reference {
	t.Helper()
	ref, err := opm.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// copyMeta gives a second home the first one's metadata, as a mirror would.
func copyMeta(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(from, "meta.git"), to).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestBucket: a home with opm.blobs uploads every blob before the tag is
// committed; a second home with only the metadata pulls the content from
// the bucket and verifies it; a corrupted bucket blob is refused.
func TestBucket(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			url := "file://" + t.TempDir()
			if kind == "s3" {
				url = castest.StartS3(t)
			}
			homeA := filepath.Join(t.TempDir(), "a")
			a := openHome(t, homeA)
			if err := a.SetConfig(context.Background(), "opm.blobs", url); err != nil {
				t.Fatal(err)
			}
			a.Close()
			a = openHome(t, homeA)
			if a.bucket == nil {
				t.Fatal("opm.blobs not picked up")
			}
			src := opmtest.WriteTree(t, map[string]string{"a.txt": "alpha", "d/b.txt": "beta", "d/c.txt": "gamma"})
			res, err := a.Push(ctx, mustRef(t, "ns/p/r:v1"), []string{src}, PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pkg, err := a.Resolve(mustRef(t, "ns/p/r:v1"))
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range pkg.Manifest.Blobs() {
				if n, err := a.bucket.Stat(ctx, b.Digest); err != nil || n != b.Size {
					t.Fatalf("blob %s not in the bucket after push: %d %v", b.Digest, n, err)
				}
			}

			homeB := filepath.Join(t.TempDir(), "b")
			copyMeta(t, homeA, homeB)
			b := openHome(t, homeB)
			if b.local.Has(pkg.Manifest.Files()[0].Digest) {
				t.Fatal("second home already has content")
			}
			out := t.TempDir()
			if _, err := b.Pull(ctx, mustRef(t, "ns/p/r@"+res.Digest.String()), out, false, nil); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(filepath.Join(out, "d", "c.txt")); string(got) != "gamma" {
				t.Fatalf("pulled %q", got)
			}

			// Corrupt one blob in the bucket (same size, other bytes); a third
			// home must refuse it and keep nothing of it.
			f := pkg.Manifest.Files()[0] // a.txt
			if err := a.bucket.Delete(ctx, f.Digest); err != nil {
				t.Fatal(err)
			}
			raw, err := cas.OpenBucket(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			putRaw(t, url, f.Digest.Encoded(), []byte("ALPHA"))
			homeC := filepath.Join(t.TempDir(), "c")
			copyMeta(t, homeA, homeC)
			c := openHome(t, homeC)
			out = t.TempDir()
			_, err = c.Pull(ctx, mustRef(t, "ns/p/r:v1"), out, false, nil)
			if !errors.Is(err, opm.ErrIntegrity) {
				t.Fatalf("pull of a corrupted blob: %v, want an integrity error", err)
			}
			if _, err := os.Stat(filepath.Join(out, "a.txt")); !os.IsNotExist(err) {
				t.Fatalf("a.txt was written from corrupted content: %v", err)
			}
			if c.local.Has(f.Digest) {
				t.Fatal("corrupted content was stored locally")
			}
		})
	}
}

// putRaw writes bytes under a blob key behind the store's back.
func putRaw(t *testing.T, url, hex string, body []byte) {
	t.Helper()
	b, err := openRawBucket(url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WriteAll(context.Background(), "blobs/sha256/"+hex, body, nil); err != nil {
		t.Fatal(err)
	}
}

// TestPushFailsWithoutBucket: when the bucket cannot take the blobs, the
// tag is not committed.
func TestPushFailsWithoutBucket(t *testing.T) {
	url := castest.StartS3(t)
	home := filepath.Join(t.TempDir(), "h")
	r := openHome(t, home)
	// A bucket that does not exist on the server.
	if err := r.SetConfig(context.Background(), "opm.blobs", strings.Replace(url, "s3://opm?", "s3://nobucket?", 1)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = openHome(t, home)
	src := opmtest.WriteTree(t, map[string]string{"a": "a"})
	if _, err := r.Push(context.Background(), mustRef(t, "ns/p/r:v1"), []string{src}, PushOptions{}); err == nil {
		t.Fatal("push succeeded with a closed bucket")
	}
	if _, err := r.Resolve(mustRef(t, "ns/p/r:v1")); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("tag visible after a failed upload: %v", err)
	}
}

// TestConcurrentPushes: 8 goroutines × 25 pushes to one repository; every
// tag lands, the history is linear, and a push of the same tag from two
// writers that both saw the old value conflicts rather than losing one.
func TestConcurrentPushes(t *testing.T) {
	r := openHome(t, filepath.Join(t.TempDir(), "h"))
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				src := opmtest.WriteTree(t, map[string]string{"f": fmt.Sprint(g, i)})
				if _, err := r.Push(ctx, mustRef(t, fmt.Sprintf("ns/p/r:g%d-%d", g, i)), []string{src}, PushOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l, err := r.List(ctx, "ns/p/r", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tags) != 200 {
		t.Fatalf("%d tags, want 200", len(l.Tags))
	}
	log, err := r.Log(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 200 {
		t.Fatalf("%d commits, want 200", len(log))
	}
	for _, ti := range l.Tags {
		if ti.Date.IsZero() || ti.Commit == "" {
			t.Fatalf("tag %s has no date", ti.Tag)
		}
	}
}

// TestTagTimes: the commit that last set each tag, found across more than
// one page of history, agrees with the tag's own git log; a tag moved later
// gets the later commit.
func TestTagTimes(t *testing.T) {
	r := openHome(t, filepath.Join(t.TempDir(), "h"))
	ctx := context.Background()
	for i := range 70 {
		src := opmtest.WriteTree(t, map[string]string{"f": fmt.Sprint(i)})
		if _, err := r.Push(ctx, mustRef(t, fmt.Sprintf("ns/p/r:t%d", i)), []string{src}, PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Tag(ctx, mustRef(t, "ns/p/r:t69"), mustRef(t, "ns/p/r:t0")); err != nil {
		t.Fatal(err)
	}
	v, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := opm.ParseRepository("ns/p/r")
	times, err := v.TagTimes(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	if len(times) != 70 {
		t.Fatalf("%d tag times, want 70", len(times))
	}
	for tag, tt := range times {
		log, err := r.Log(ctx, "ns/p/r:"+tag, 1)
		if err != nil || len(log) != 1 {
			t.Fatalf("log of %s: %v %v", tag, log, err)
		}
		if tt.Commit.String() != log[0].Commit {
			t.Fatalf("%s: set by %s, git log says %s", tag, tt.Commit, log[0].Commit)
		}
	}
	if times["t0"].Commit.String() != v.Commit().String() {
		t.Fatal("t0 was moved by the last commit")
	}
}

// TestResolveKeptByDigest: a manifest kept by digest (as the OCI API
// stores an untagged push) resolves by digest without a tag.
func TestResolveKeptByDigest(t *testing.T) {
	r := openHome(t, filepath.Join(t.TempDir(), "h"))
	ctx := context.Background()
	res, err := r.Push(ctx, mustRef(t, "ns/p/r:v1"), []string{opmtest.WriteTree(t, map[string]string{"f": "x"})}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Resolve(mustRef(t, "ns/p/r:v1"))
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := opm.ParseRepository("ns/p/r")
	_, _, err = r.meta.Update(ctx, r.Author(ctx), func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{
			{Path: layout.ManifestPath(repo, res.Digest), Data: p.Bytes},
			{Path: layout.TagPath(repo, "v1"), Delete: true},
		}, gitmeta.Message{Subject: "keep by digest"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Resolve(mustRef(t, "ns/p/r@"+res.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != res.Digest {
		t.Fatalf("resolved %s", got.Digest)
	}
}

// TestFsErrorKinds: a file the system refuses is a permission error (exit
// 9), not invalid input (exit 2, which it used to be); a missing one is not
// found.
func TestFsErrorKinds(t *testing.T) {
	perm := fsError(&fs.PathError{Op: "open", Path: "/x", Err: syscall.EACCES})
	if k := opm.KindOf(perm); k.Err != opm.ErrPermission || k.Exit != 9 {
		t.Errorf("EACCES: kind %s, exit %d", k.Name, k.Exit)
	}
	if perm.Error() != "open /x: permission denied" {
		t.Errorf("message %q", perm)
	}
	if k := opm.KindOf(fsError(&fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT})); k.Err != opm.ErrNotFound {
		t.Errorf("ENOENT: kind %s", k.Name)
	}
}

// TestPushLeavesOutGit: a pushed tree's .git directories (and a .git file
// of a worktree) are left out and counted; the package never carries one.
func TestPushLeavesOutGit(t *testing.T) {
	r := openHome(t, filepath.Join(t.TempDir(), "h"))
	src := opmtest.WriteTree(t, map[string]string{
		"main.go": "package main", ".git/config": "x", ".git/hooks/pre-commit": "#!/bin/sh", "sub/.git": "gitdir: ..", "sub/a.txt": "a", ".gitignore": "*.o",
	})
	res, err := r.Push(context.Background(), mustRef(t, "ns/p/r:v1"), []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.SkippedGit != 3 || res.Files != 3 {
		t.Fatalf("pushed %d files, skipped %d; want 3 and 3", res.Files, res.SkippedGit)
	}
	p, err := r.Resolve(mustRef(t, "ns/p/r:v1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range p.Manifest.Files() {
		if strings.Contains(f.Path, ".git/") || strings.HasSuffix(f.Path, ".git") {
			t.Errorf("pushed %s", f.Path)
		}
	}
}

// TestPullNeverWritesThroughLinks: links are written verbatim (absolute
// and dangling ones too), a pull over them replaces the link itself, and a
// link already in the target on the way to a file — even one that stays
// inside it, like a checkout's hooks -> .git/hooks — stops the pull before
// anything is written.
func TestPullNeverWritesThroughLinks(t *testing.T) {
	ctx := context.Background()
	r := openHome(t, filepath.Join(t.TempDir(), "h"))
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "f"), []byte("f"), 0o644))
	must(os.Symlink("/etc", filepath.Join(src, "abs")))
	must(os.Symlink("no/such", filepath.Join(src, "dangling")))
	must(os.MkdirAll(filepath.Join(src, "hooks"), 0o755))
	must(os.WriteFile(filepath.Join(src, "hooks/pre-commit"), []byte("#!/bin/sh\necho pwned\n"), 0o755))
	if _, err := r.Push(ctx, mustRef(t, "ns/p/r:v1"), []string{src}, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "checkout")
	must(os.MkdirAll(filepath.Join(out, ".git/hooks"), 0o755))
	must(os.Symlink(".git/hooks", filepath.Join(out, "hooks")))
	for _, force := range []bool{false, true} {
		_, err := r.Pull(ctx, mustRef(t, "ns/p/r:v1"), out, force, nil)
		if !errors.Is(err, opm.ErrExists) || !strings.Contains(err.Error(), `"hooks" is a symbolic link`) {
			t.Fatalf("pull (force %v) through hooks -> .git/hooks: %v", force, err)
		}
		if _, err := os.Lstat(filepath.Join(out, ".git/hooks/pre-commit")); !os.IsNotExist(err) {
			t.Fatal("the pull wrote a hook into .git")
		}
		if _, err := os.Lstat(filepath.Join(out, "f")); !os.IsNotExist(err) {
			t.Fatal("the refused pull wrote a file")
		}
	}
	// Into a clean directory, twice: the links as they were pushed.
	out = t.TempDir()
	for _, force := range []bool{false, true} {
		if _, err := r.Pull(ctx, mustRef(t, "ns/p/r:v1"), out, force, nil); err != nil {
			t.Fatal(err)
		}
		for link, want := range map[string]string{"abs": "/etc", "dangling": "no/such"} {
			if got, err := os.Readlink(filepath.Join(out, link)); err != nil || got != want {
				t.Fatalf("%s -> %q %v, want %q", link, got, err, want)
			}
		}
	}
	if fi, err := os.Lstat("/etc/f"); err == nil && fi.Size() == 1 {
		t.Fatal("a pull wrote through abs -> /etc")
	}
}

// TestPushRecordsTimes: push records each file's time; --mtime (and
// SOURCE_DATE_EPOCH) clamps later ones; pull gives the files and their
// directories those times; the same tree with the same times gives the same
// digest.
func TestPushRecordsTimes(t *testing.T) {
	ctx := context.Background()
	r := openHome(t, filepath.Join(t.TempDir(), "h"))
	src := opmtest.WriteTree(t, map[string]string{"a/old": "old", "a/b/new": "new", "top": "top"})
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	recent := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for p, tm := range map[string]time.Time{"a/old": old, "a/b/new": recent, "top": old} {
		if err := os.Chtimes(filepath.Join(src, p), tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	res, err := r.Push(ctx, mustRef(t, "ns/p/r:v1"), []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := r.Push(ctx, mustRef(t, "ns/p/r:v2"), []string{src}, PushOptions{})
	if err != nil || again.Digest != res.Digest {
		t.Fatalf("the same tree with the same times: %s, then %s (%v)", res.Digest, again.Digest, err)
	}
	p, err := r.Resolve(mustRef(t, "ns/p/r:v1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range p.Manifest.Files() {
		want := map[string]time.Time{"a/old": old, "a/b/new": recent, "top": old}[f.Path]
		if !f.ModTime.Equal(want) {
			t.Errorf("%s recorded at %v, want %v", f.Path, f.ModTime, want)
		}
	}
	clamp := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	clamped, err := r.Push(ctx, mustRef(t, "ns/p/r:v3"), []string{src}, PushOptions{ClampMTime: clamp})
	if err != nil || clamped.Digest == res.Digest {
		t.Fatalf("clamped push: %v %v", clamped, err)
	}
	out := t.TempDir()
	if _, err := r.Pull(ctx, mustRef(t, "ns/p/r:v3"), out, false, nil); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]time.Time{"a/old": old, "a/b/new": clamp, "top": old, "a/b": clamp, "a": clamp, ".": clamp} {
		fi, err := os.Stat(filepath.Join(out, p))
		if err != nil || !fi.ModTime().Equal(want) {
			t.Errorf("pulled %s: %v %v, want %v", p, fi.ModTime(), err, want)
		}
	}
}

// A bucket URL that cannot be opened is refused in one line and not
// written: written, it would stop every later command of the home.
func TestSetConfigRefusesBadBucket(t *testing.T) {
	r := openHome(t, t.TempDir())
	for _, key := range []string{"opm.blobs", "remote.origin.blobs"} {
		err := r.SetConfig(context.Background(), key, "gcs://nosuch") // a typo of gs://
		if !errors.Is(err, opm.ErrInvalid) {
			t.Errorf("SetConfig %s gcs://: %v, want an invalid-input error", key, err)
		}
		if v, _ := r.Config(key); v != "" {
			t.Errorf("%s written anyway: %q", key, v)
		}
	}
	if err := r.SetConfig(context.Background(), "opm.blobs", "file://"+t.TempDir()); err != nil {
		t.Errorf("a file:// bucket refused: %v", err)
	}
}
