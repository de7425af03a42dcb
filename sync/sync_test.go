package opmsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

// counted counts a bucket's operations.
type counted struct {
	Blobs
	ops atomic.Int64
}

func (c *counted) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	c.ops.Add(1)
	return c.Blobs.Stat(ctx, d)
}

func (c *counted) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	c.ops.Add(1)
	return c.Blobs.Open(ctx, d)
}

func (c *counted) Store(ctx context.Context, d digest.Digest, n int64, r io.Reader, lookup bool) (bool, error) {
	c.ops.Add(1)
	return c.Blobs.Store(ctx, d, n, r, lookup)
}

// side is one registry: a bare repository and a bucket.
type side struct {
	remote registry.Remote
	repo   *gitmeta.Repo
	bucket *cas.Bucket
	count  *counted
}

func newSide(t *testing.T, name string) *side {
	t.Helper()
	dir := t.TempDir()
	s := &side{remote: registry.Remote{Name: name, URL: filepath.Join(dir, "meta.git"), Blobs: "file://" + filepath.Join(dir, "blobs") + "?create_dir=1"}}
	var err error
	if s.repo, err = gitmeta.Init(s.remote.URL); err != nil {
		t.Fatal(err)
	}
	if s.bucket, err = cas.OpenBucket(context.Background(), s.remote.Blobs); err != nil {
		t.Fatal(err)
	}
	s.count = &counted{Blobs: s.bucket}
	t.Cleanup(func() { s.repo.Close(); s.bucket.Close() })
	return s
}

// push stores a package of the given file contents at ref, blobs first.
func (s *side) push(t *testing.T, ref string, contents ...string) []digest.Digest {
	t.Helper()
	r, err := opm.ParseTagReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return s.store(t, r, contents...)
}

// store stores a package of the given file contents, blobs first, as the
// tag of r, or kept by digest when r has no tag (an untagged OCI push).
func (s *side) store(t *testing.T, r opm.Reference, contents ...string) []digest.Digest {
	t.Helper()
	ctx := context.Background()
	var files []opm.File
	var ds []digest.Digest
	for i, c := range append([]string{string(opm.EmptyJSON)}, contents...) {
		d := digest.FromString(c)
		if err := s.bucket.Put(ctx, d, int64(len(c)), strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			files = append(files, opm.File{Path: fmt.Sprintf("f%d", i), Mode: 0o644, Size: int64(len(c)), Digest: d})
			ds = append(ds, d)
		}
	}
	m, err := opm.NewPackage(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.repo.Update(ctx, gitmeta.Signature{Name: "t", Email: "t@example.org"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		p := layout.TagPath(r.Repository, r.Tag)
		if r.Tag == "" {
			p = layout.ManifestPath(r.Repository, digest.FromBytes(body))
		}
		return []gitmeta.Change{{Path: p, Data: body}}, gitmeta.Message{Subject: "push " + r.String()}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func (s *side) head(t *testing.T) plumbing.Hash {
	t.Helper()
	h, err := s.repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// mirrorT mirrors src into dst from the home at home (the sides added as
// its remotes), counting the requests to both buckets.
func mirrorT(t *testing.T, home string, src, dst *side, opts Options) (*Result, error) {
	t.Helper()
	ctx := context.Background()
	r, err := registry.Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, s := range []*side{src, dst} {
		if err := r.AddRemote(ctx, s.remote); err != nil && !errors.Is(err, opm.ErrExists) {
			t.Fatal(err)
		}
	}
	src.count.ops.Store(0)
	dst.count.ops.Store(0)
	opts.Src = func(Blobs) Blobs { return src.count }
	opts.Dst = func(Blobs) Blobs { return dst.count }
	return Mirror(ctx, r, src.remote.Name, dst.remote.Name, opts)
}

func TestMirrorPreservesCommitsAndCopiesOnlyWhatIsMissing(t *testing.T) {
	home := t.TempDir()
	src, dst := newSide(t, "src"), newSide(t, "dst")
	src.push(t, "acme/web/site:v1", "a", "b")
	src.push(t, "acme/web/site:v2", "b", "c")

	res, err := mirrorT(t, home, src, dst, Options{DryRun: true})
	if err != nil || len(res.Missing) != 4 || !dst.head(t).IsZero() {
		t.Fatalf("dry run: %v %+v, dst at %s", err, res, dst.head(t))
	}
	res, err = mirrorT(t, home, src, dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "fast-forward" || res.Copied != 4 || res.Commits != 2 || dst.head(t) != src.head(t) {
		t.Fatalf("first mirror: %+v; dst %s src %s", res, dst.head(t), src.head(t))
	}
	// Nothing new: no bucket request at all.
	res, err = mirrorT(t, home, src, dst, Options{})
	if err != nil || res.Mode != "up-to-date" || src.count.ops.Load()+dst.count.ops.Load() != 0 {
		t.Fatalf("no-op mirror: %v %+v, %d+%d bucket requests", err, res, src.count.ops.Load(), dst.count.ops.Load())
	}
	// One new tag with one new blob: one Stat per blob named, one copy.
	src.push(t, "acme/web/site:v3", "c", "d")
	res, err = mirrorT(t, home, src, dst, Options{})
	if err != nil || res.Copied != 1 || res.Present != 2 || len(res.Tags) != 1 {
		t.Fatalf("incremental mirror: %v %+v", err, res)
	}
	if got := src.count.ops.Load() + dst.count.ops.Load(); got != 3+1 {
		t.Fatalf("incremental mirror made %d bucket requests, want 4 (3 Puts, 1 read)", got)
	}
}

// TestMirrorCopiesBlobsOfManifestsKeptByDigest: a manifest kept by digest
// (an untagged OCI push) travels in the commits of a preserving mirror, so
// its blobs are copied first, like a tag's.
func TestMirrorCopiesBlobsOfManifestsKeptByDigest(t *testing.T) {
	home := t.TempDir()
	src, dst := newSide(t, "src"), newSide(t, "dst")
	src.push(t, "acme/web/site:v1", "tagged")
	untagged := src.store(t, opm.Reference{Repository: opm.Repository{Namespace: "acme", Project: "web", Name: "site"}}, "untagged")
	if _, err := mirrorT(t, home, src, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	if dst.head(t) != src.head(t) {
		t.Fatal("the mirror did not fast-forward")
	}
	if _, err := dst.bucket.Stat(context.Background(), untagged[0]); err != nil {
		t.Fatalf("the blob of a manifest kept by digest was not copied: %v", err)
	}
}

func TestMirrorRefusesDivergedDestination(t *testing.T) {
	home := t.TempDir()
	src, dst := newSide(t, "src"), newSide(t, "dst")
	src.push(t, "acme/web/site:v1", "a")
	if _, err := mirrorT(t, home, src, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	dst.push(t, "acme/web/rogue:v1", "r")
	src.push(t, "acme/web/site:v2", "b")
	if _, err := mirrorT(t, home, src, dst, Options{}); !errors.Is(err, opm.ErrConflict) {
		t.Fatalf("diverged: %v, want ErrConflict", err)
	}
	res, err := mirrorT(t, home, src, dst, Options{Force: true})
	if err != nil || res.Mode != "forced" || dst.head(t) != src.head(t) {
		t.Fatalf("--force: %v %+v", err, res)
	}
}

func TestMirrorCorruptSourceBlob(t *testing.T) {
	home := t.TempDir()
	src, dst := newSide(t, "src"), newSide(t, "dst")
	src.push(t, "acme/web/good:v1", "good")
	bad := src.push(t, "acme/web/bad:v1", "bad!")[0]
	// Replace the blob in the source bucket by other bytes of the same size.
	if err := src.bucket.Delete(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	raw := strings.TrimPrefix(strings.TrimSuffix(src.remote.Blobs, "?create_dir=1"), "file://")
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("printf 'evil' > %s/blobs/sha256/%s", raw, bad.Encoded())).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	res, err := mirrorT(t, home, src, dst, Options{})
	if !errors.Is(err, opm.ErrIntegrity) || len(res.Failed) != 1 || res.Failed[0].Tag != "acme/web/bad:v1" {
		t.Fatalf("preserving mirror: %v %+v", err, res)
	}
	if !dst.head(t).IsZero() {
		t.Fatal("the preserving mirror published commits naming a corrupt blob")
	}
	if _, err := dst.bucket.Stat(context.Background(), bad); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("corrupt blob at the destination: %v", err)
	}
	res, err = mirrorT(t, home, src, dst, Options{Include: []string{"acme/*/*"}})
	if !errors.Is(err, opm.ErrIntegrity) || len(res.Tags) != 1 || res.Tags[0] != "acme/web/good:v1" {
		t.Fatalf("filtered mirror: %v %+v", err, res)
	}
	snap, err := dst.repo.Snapshot(dst.head(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.ReadFile("acme/web/bad/tags/v1.json"); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("the bad tag reached the destination: %v", err)
	}
}

func TestMirrorFiltered(t *testing.T) {
	home := t.TempDir()
	src, dst := newSide(t, "src"), newSide(t, "dst")
	src.push(t, "acme/web/site:v1", "a")
	src.push(t, "acme/web/site:v1-rc", "b")
	src.push(t, "other/x/y:v1", "c")
	opts := Options{Include: []string{"acme/*/*"}, Exclude: []string{"*/*/*:*-rc"}}
	res, err := mirrorT(t, home, src, dst, opts)
	if err != nil || res.Mode != "filtered" || len(res.Tags) != 1 || res.Copied != 2 {
		t.Fatalf("filtered: %v %+v", err, res)
	}
	log, err := dst.repo.Log(context.Background(), plumbing.ZeroHash, "", 0)
	if err != nil || len(log) != 1 {
		t.Fatalf("log: %v %v", err, log)
	}
	if v, ok := log[0].Message.Trailer("Opm-Synced-From"); !ok || v != src.remote.URL+"@"+src.head(t).String() {
		t.Fatalf("trailer %q", v)
	}
	// Removing a selected tag at the source removes it at the destination.
	_, _, err = src.repo.Update(context.Background(), gitmeta.Signature{Name: "t", Email: "t@example.org"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{{Path: "acme/web/site/tags/v1.json", Delete: true}}, gitmeta.Message{Subject: "rm"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err = mirrorT(t, home, src, dst, opts)
	if err != nil || len(res.Removed) != 1 {
		t.Fatalf("removal: %v %+v", err, res)
	}
	// Someone else commits to the filtered mirror: refused.
	dst.push(t, "acme/web/rogue:v1", "r")
	src.push(t, "acme/web/site:v2", "d")
	if _, err := mirrorT(t, home, src, dst, opts); !errors.Is(err, opm.ErrConflict) {
		t.Fatalf("diverged filtered mirror: %v", err)
	}
}

// TestMirrorMissingSourceBlob: a blob the source's bucket lacks leaves its
// tag out as not found (exit 3), not as an integrity failure (exit 5, which
// it used to be): nothing is wrong with any byte.
func TestMirrorMissingSourceBlob(t *testing.T) {
	home := t.TempDir()
	src, dst := newSide(t, "src"), newSide(t, "dst")
	src.push(t, "acme/web/good:v1", "good")
	gone := src.push(t, "acme/web/gone:v1", "gone")[0]
	if err := src.bucket.Delete(context.Background(), gone); err != nil {
		t.Fatal(err)
	}
	res, err := mirrorT(t, home, src, dst, Options{Include: []string{"acme"}})
	if k := opm.KindOf(err); k.Err != opm.ErrNotFound || k.Exit != 3 {
		t.Fatalf("a missing source blob: %v (kind %s, exit %d), want not found, exit 3", err, k.Name, k.Exit)
	}
	if len(res.Failed) != 1 || res.Failed[0].Tag != "acme/web/gone:v1" || len(res.Tags) != 1 {
		t.Fatalf("filtered mirror: %+v", res)
	}
}

// referrer stores, kept by digest in repo, a package of one file (content)
// whose subject is the manifest d of size n: a signature, an SBOM, a Helm
// chart's files. It returns its digest and its file's.
func (s *side) referrer(t *testing.T, repo opm.Repository, d digest.Digest, n int64, content string) (digest.Digest, digest.Digest) {
	t.Helper()
	ctx := context.Background()
	fd := digest.FromString(content)
	if err := s.bucket.Put(ctx, fd, int64(len(content)), strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	m, err := opm.NewPackage([]opm.File{{Path: "sig", Mode: 0o644, Size: int64(len(content)), Digest: fd}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Subject = &opm.Descriptor{MediaType: opm.MediaTypeManifest, Digest: d, Size: n}
	body, md, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.repo.Update(ctx, gitmeta.Signature{Name: "t", Email: "t@example.org"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{{Path: layout.ManifestPath(repo, md), Data: body}}, gitmeta.Message{Subject: "push referrer"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return md, fd
}

// tagManifest is the digest and size of the manifest a tag of s holds.
func (s *side) tagManifest(t *testing.T, ref string) (opm.Reference, digest.Digest, int64) {
	t.Helper()
	r, err := opm.ParseTagReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.repo.Snapshot(s.head(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := snap.ReadFile(layout.TagPath(r.Repository, r.Tag))
	if err != nil {
		t.Fatal(err)
	}
	return r, digest.FromBytes(b), int64(len(b))
}

// TestMirrorFilteredCarriesReferrers: a filtered mirror copies, with a tag
// it chooses, the manifests kept by digest that refer to it (a Helm
// chart's files, a signature), blobs included, and not those of a tag it
// leaves out; they are no tags in its result. (They were left behind.)
func TestMirrorFilteredCarriesReferrers(t *testing.T) {
	home := t.TempDir()
	src, dst := newSide(t, "src"), newSide(t, "dst")
	src.push(t, "acme/web/site:v1", "a")
	src.push(t, "acme/web/site:v1-rc", "b")
	r, d, n := src.tagManifest(t, "acme/web/site:v1")
	want, wantBlob := src.referrer(t, r.Repository, d, n, "signature of v1")
	_, rcd, rcn := src.tagManifest(t, "acme/web/site:v1-rc")
	other, _ := src.referrer(t, r.Repository, rcd, rcn, "signature of v1-rc")
	opts := Options{Include: []string{"acme/*/*"}, Exclude: []string{"*/*/*:*-rc"}}
	res, err := mirrorT(t, home, src, dst, opts)
	if err != nil || len(res.Tags) != 1 {
		t.Fatalf("filtered: %v %+v", err, res)
	}
	snap, err := dst.repo.Snapshot(dst.head(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.Stat(layout.ManifestPath(r.Repository, want)); err != nil {
		t.Errorf("the referrer of the chosen tag was not copied: %v", err)
	}
	if _, err := snap.Stat(layout.ManifestPath(r.Repository, other)); err == nil {
		t.Error("the referrer of a tag left out was copied")
	}
	if _, err := dst.bucket.Stat(context.Background(), wantBlob); err != nil {
		t.Errorf("the referrer's blob was not copied: %v", err)
	}
	// A referrer added later, to a tag mirrored already, follows it.
	later, _ := src.referrer(t, r.Repository, d, n, "an SBOM of v1")
	if _, err := mirrorT(t, home, src, dst, opts); err != nil {
		t.Fatal(err)
	}
	if snap, err = dst.repo.Snapshot(dst.head(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := snap.Stat(layout.ManifestPath(r.Repository, later)); err != nil {
		t.Errorf("a later referrer of the chosen tag was not copied: %v", err)
	}
}
