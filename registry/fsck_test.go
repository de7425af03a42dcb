package registry

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/layout"
)

// pushTree pushes files as ref and returns the package.
func pushTree(t *testing.T, r *Registry, ref string, files map[string]string) *Package {
	t.Helper()
	return pushDir(t, r, ref, opmtest.WriteTree(t, files))
}

// pushDir pushes the directory src as ref and returns the package.
func pushDir(t *testing.T, r *Registry, ref, src string) *Package {
	t.Helper()
	if _, err := r.Push(context.Background(), mustRef(t, ref), []string{src}, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	pkg, err := r.Resolve(mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

func fsck(t *testing.T, r *Registry, opts FsckOptions) *FsckResult {
	t.Helper()
	res, err := r.Fsck(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// kinds lists the problems as "kind digest-or-path" strings.
func kinds(res *FsckResult) []string {
	var out []string
	for _, p := range res.Problems {
		s := p.Path
		if p.Digest != "" {
			s = p.Digest.String()
		}
		out = append(out, p.Kind+" "+s)
	}
	return out
}

// overwrite replaces a stored blob's bytes behind the store's back.
func overwrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

func fileDigest(t *testing.T, pkg *Package, name string) opm.File {
	t.Helper()
	for _, f := range pkg.Manifest.Files() {
		if f.Path == name {
			return f
		}
	}
	t.Fatalf("%s not in the package", name)
	return opm.File{}
}

// TestFsckLocal: a home without a bucket. Clean → no problems and every
// byte re-hashed; a blob with the right size but other bytes is found only
// by --read-data, in exactly one of the slices 1/3..3/3, with the tags it
// affects; a truncated one without --read-data.
func TestFsckLocal(t *testing.T) {
	r := openHome(t, t.TempDir())
	pushTree(t, r, "ns/p/a:v1", map[string]string{"x.txt": "shared", "y.txt": "only in a"})
	pkg := pushTree(t, r, "ns/p/b:v1", map[string]string{"x.txt": "shared", "z.txt": "only in b"})

	res := fsck(t, r, FsckOptions{ReadData: true})
	if len(res.Problems) != 0 || res.Tags != 2 || res.Blobs != 4 {
		t.Fatalf("clean home: %d tags, %d blobs, problems %v", res.Tags, res.Blobs, kinds(res))
	}
	var stored int64
	r.local.Walk(func(_ digest.Digest, n int64) error { stored += n; return nil })
	if res.BytesVerified != stored {
		t.Fatalf("verified %d bytes, the named blobs hold %d", res.BytesVerified, stored)
	}

	shared := fileDigest(t, pkg, "x.txt")
	overwrite(t, r.local.Path(shared.Digest), []byte("SHARED"))
	if res := fsck(t, r, FsckOptions{}); len(res.Problems) != 0 {
		t.Fatalf("same-size corruption found without --read-data: %v", kinds(res))
	}
	found := 0
	for n := 1; n <= 3; n++ {
		res := fsck(t, r, FsckOptions{ReadData: true, Subset: Subset{N: n, M: 3}})
		for _, p := range res.Problems {
			if p.Kind != ProblemCorruptBlob || p.Digest != shared.Digest {
				t.Fatalf("slice %d/3: unexpected %v", n, kinds(res))
			}
			if !slices.Equal(p.Tags, []string{"ns/p/a:v1", "ns/p/b:v1"}) {
				t.Fatalf("affected tags %v", p.Tags)
			}
			found++
		}
	}
	if found != 1 {
		t.Fatalf("the corrupt blob was found in %d of the slices 1/3..3/3, want exactly 1", found)
	}

	only := fileDigest(t, pkg, "z.txt")
	overwrite(t, r.local.Path(only.Digest), []byte("short"))
	res = fsck(t, r, FsckOptions{})
	if want := []string{"size-mismatch " + only.Digest.String()}; !slices.Equal(kinds(res), want) {
		t.Fatalf("got %v, want %v", kinds(res), want)
	}
	// Repair removes wrong bytes; with no bucket holding another copy, the
	// tag stays broken and fsck still says so.
	res = fsck(t, r, FsckOptions{ReadData: true, Repair: true})
	if res.Damaged() != 2 || r.local.Has(only.Digest) || r.local.Has(shared.Digest) {
		t.Fatalf("repair of the only copies: damaged %d, problems %v", res.Damaged(), kinds(res))
	}
	res = fsck(t, r, FsckOptions{})
	if want := []string{"missing-blob " + shared.Digest.String(), "missing-blob " + only.Digest.String()}; !sameSet(kinds(res), want) {
		t.Fatalf("after repair: %v, want %v", kinds(res), want)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestFsckBucket: in a home with a bucket, a blob missing from the bucket
// and a corrupt bucket blob are problems of the registry; a corrupt local
// copy is repaired (removed, then fetched again on the next pull).
func TestFsckBucket(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	home := t.TempDir()
	r := openHome(t, home)
	if err := r.SetConfig(context.Background(), "opm.blobs", url); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = openHome(t, home)
	pkg := pushTree(t, r, "ns/p/r:v1", map[string]string{"a": "alpha", "b": "beta", "c": "gamma"})
	a, b, c := fileDigest(t, pkg, "a"), fileDigest(t, pkg, "b"), fileDigest(t, pkg, "c")
	if res := fsck(t, r, FsckOptions{ReadData: true}); len(res.Problems) != 0 {
		t.Fatalf("clean: %v", kinds(res))
	}

	if err := r.bucket.Delete(ctx, a.Digest); err != nil {
		t.Fatal(err)
	}
	putRaw(t, url, b.Digest.Encoded(), []byte("BETA"))
	overwrite(t, r.local.Path(c.Digest), []byte("GAMMA"))

	res := fsck(t, r, FsckOptions{})
	if want := []string{"missing-blob " + a.Digest.String()}; !slices.Equal(kinds(res), want) {
		t.Fatalf("without --read-data: %v, want %v", kinds(res), want)
	}
	res = fsck(t, r, FsckOptions{ReadData: true, Repair: true})
	want := []string{"missing-blob " + a.Digest.String(), "corrupt-blob " + b.Digest.String(), "corrupt-blob " + c.Digest.String()}
	if !sameSet(kinds(res), want) {
		t.Fatalf("with --read-data: %v, want %v", kinds(res), want)
	}
	for _, p := range res.Problems {
		if p.Repaired != (p.Digest == c.Digest) {
			t.Fatalf("%s %s (%s) repaired=%v", p.Kind, p.Digest, p.Where, p.Repaired)
		}
		if !slices.Equal(p.Tags, []string{"ns/p/r:v1"}) {
			t.Fatalf("affected tags %v", p.Tags)
		}
	}
	if r.local.Has(c.Digest) {
		t.Fatal("repair kept the corrupt local copy")
	}
	if err := r.ensureLocal(ctx, c.Digest); err != nil {
		t.Fatalf("the repaired copy is not fetched again: %v", err)
	}
	if _, err := r.local.Verify(ctx, c.Digest); err != nil {
		t.Fatal(err)
	}
}

// TestFsckMetadata: what a hostile or broken writer can leave in the
// metadata is reported by path, and fsck still checks the rest.
func TestFsckMetadata(t *testing.T) {
	ctx := context.Background()
	r := openHome(t, t.TempDir())
	pushTree(t, r, "ns/p/r:good", map[string]string{"a": "alpha"})
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + digest.FromString("absent").Encoded() + `","size":10}]}`)
	_, _, err := r.meta.Update(ctx, gitmeta.Signature{Name: "evil", Email: "e@x"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{
			{Path: "ns/p/r/tags/broken.json", Data: []byte("{not json")},
			{Path: "ns/p/r/tags/index.json", Data: body},
			{Path: "ns/p/r/tags/.hidden.json", Data: []byte("{}")},
			{Path: "ns/Bad Name/r/tags/v1.json", Data: []byte("{}")},
			{Path: "ns/p/r/manifests/" + digest.FromString("other").Encoded() + ".json", Data: body},
			{Path: "ns/p/r/notes.txt", Data: []byte("x")},
			// The documented description files are no problem.
			{Path: "ns/namespace.json", Data: []byte(`{"description":"n"}`)},
			{Path: "ns/p/project.json", Data: []byte(`{"description":"p"}`)},
			{Path: "ns/p/r/repository.json", Data: []byte(`{"description":"r"}`)},
			// A file where a description file belongs is, and one off
			// the schema (layout.CheckMeta).
			{Path: "ns/p/r/project.json", Data: []byte("{}")},
			{Path: "ns2/namespace.json", Data: []byte(`{"description":"n","icon":"x"}`)},
			// The registry's own files, broken.
			{Path: layout.AllowedSigners, Data: []byte("ci@example.org ssh-ed25519 notakey\n")},
			{Path: layout.Timestamp, Data: []byte(`{"expires":"soon"}`)},
		}, gitmeta.Message{Subject: "break things"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res := fsck(t, r, FsckOptions{})
	want := []string{
		"bad-manifest ns/p/r/tags/broken.json",
		"bad-manifest ns/p/r/manifests/" + digest.FromString("other").Encoded() + ".json",
		"bad-name ns/Bad Name",
		"bad-name ns/p/r/notes.txt",
		"bad-name ns/p/r/project.json",
		"bad-name ns/p/r/tags/.hidden.json",
		"bad-name ns2/namespace.json",
		"missing-manifest sha256:" + digest.FromString("absent").Encoded(),
		"bad-trust " + layout.AllowedSigners,
		"bad-trust " + layout.Timestamp,
	}
	if !sameSet(kinds(res), want) {
		t.Fatalf("got\n%v\nwant\n%v", kinds(res), want)
	}
	if res.Damaged() != len(want) {
		t.Fatalf("damaged %d", res.Damaged())
	}
}

// TestFsckTempFiles: leftovers are reported but are not damage; repair
// removes the old ones and keeps those a writer may still be writing.
func TestFsckTempFiles(t *testing.T) {
	r := openHome(t, t.TempDir())
	pushTree(t, r, "ns/p/r:v1", map[string]string{"a": "alpha"})
	tmp := filepath.Join(r.Paths().Blobs(), "tmp")
	old, fresh := filepath.Join(tmp, "put-old"), filepath.Join(tmp, "put-fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	res := fsck(t, r, FsckOptions{})
	if len(res.Problems) != 2 || res.Damaged() != 0 {
		t.Fatalf("temp files: %v, damaged %d", kinds(res), res.Damaged())
	}
	res = fsck(t, r, FsckOptions{Repair: true})
	if !res.IndexRebuilt || res.Repaired != 1 {
		t.Fatalf("repair: %+v", res)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("old leftover kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("fresh temp file removed: %v", err)
	}
}

// TestFsckRemote checks a remote's metadata and bucket, not this home's.
func TestFsckRemote(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	origin := t.TempDir()
	o := openHome(t, origin)
	if err := o.SetConfig(context.Background(), "opm.blobs", url); err != nil {
		t.Fatal(err)
	}
	o.Close()
	o = openHome(t, origin)
	pkg := pushTree(t, o, "ns/p/r:v1", map[string]string{"a": "alpha"})

	r := openHome(t, t.TempDir())
	if err := r.AddRemote(ctx, Remote{Name: "up", URL: o.Paths().Meta(), Blobs: url}); err != nil {
		t.Fatal(err)
	}
	res := fsck(t, r, FsckOptions{Remote: "up", ReadData: true})
	if len(res.Problems) != 0 || res.Tags != 1 || res.Target != "remote up" || res.BytesVerified == 0 {
		t.Fatalf("remote: %+v", res)
	}
	a := fileDigest(t, pkg, "a")
	if err := o.bucket.Delete(ctx, a.Digest); err != nil {
		t.Fatal(err)
	}
	res = fsck(t, r, FsckOptions{Remote: "up"})
	if want := []string{"missing-blob " + a.Digest.String()}; !slices.Equal(kinds(res), want) {
		t.Fatalf("got %v, want %v", kinds(res), want)
	}
	if _, err := r.Fsck(ctx, FsckOptions{Remote: "up", Repair: true}); err == nil {
		t.Fatal("--repair of a remote accepted")
	}
}

func TestParseSubset(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "100%": true, "10%": true, "10": true, "1/10": true, "10/10": true,
		"0%": false, "101": false, "0/3": false, "4/3": false, "1/0": false, "x": false, "1/x": false, "-5%": false} {
		_, err := ParseSubset(in)
		if (err == nil) != ok {
			t.Errorf("ParseSubset(%q): %v", in, err)
		}
	}
	// Slices partition the digests.
	s := []Subset{{N: 1, M: 4}, {N: 2, M: 4}, {N: 3, M: 4}, {N: 4, M: 4}}
	for i := range 200 {
		d := digest.FromString(string(rune(i)))
		n := 0
		for _, sub := range s {
			if sub.Has(d) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s is in %d slices", d, n)
		}
	}
}
