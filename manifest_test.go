package opm

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func samplePackage(t testing.TB) *Manifest {
	m, err := NewPackage([]File{
		{Path: "bin/tool", Mode: 0o755, Size: 5, Digest: digest.FromString("tool\n")},
		{Path: "README.md", Mode: 0o644, Size: 6, Digest: digest.FromString("hello\n"), MediaType: "text/markdown"},
		{Path: "empty", Mode: 0o600, Size: 0, Digest: EmptyFileDigest},
		{Path: "bin/latest", Mode: 0o777, Symlink: "tool"},
	}, map[string]string{"org.example.note": "a <b> & c"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestManifestGolden(t *testing.T) {
	b, d, err := samplePackage(t).Encode()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "package.golden.json")
	if *update {
		os.WriteFile(golden, b, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("canonical encoding changed:\n%s\nwant:\n%s", b, want)
	}
	if d != digest.FromBytes(want) {
		t.Fatal("digest is not the sha256 of the bytes")
	}
	// Same files in another order give the same bytes.
	m2 := samplePackage(t)
	m2.Layers[0], m2.Layers[1] = m2.Layers[1], m2.Layers[0]
	m3, err := NewPackage(m2.Files(), m2.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	if b3, _, _ := m3.Encode(); !bytes.Equal(b3, b) {
		t.Fatal("file order changes the encoding")
	}
}

func TestNewPackageRefuses(t *testing.T) {
	d := digest.FromString("x")
	cases := []struct {
		files   []File
		mention string
	}{
		{[]File{{Path: "a", Digest: d}, {Path: "a", Digest: d}}, "two files"},
		{[]File{{Path: "a", Digest: d}, {Path: "a/b", Digest: d}}, "also the directory"},
		{[]File{{Path: "../x", Digest: d}}, "'..'"},
		{[]File{{Path: "/etc/passwd", Digest: d}}, "absolute"},
		{[]File{{Path: "a\\b", Digest: d}}, "backslash"},
		{[]File{{Path: "a\x00b", Digest: d}}, "control"},
		{[]File{{Path: "a//b", Digest: d}}, "empty part"},
		{[]File{{Path: "a/./b", Digest: d}}, "'.'"},
		{[]File{{Path: "l", Symlink: "a\u202eb"}}, "bidirectional"},
		{[]File{{Path: "l", Symlink: "\x01"}}, "control"},
		{[]File{{Path: "a", Digest: d, ModTime: time.Unix(-1, 0)}}, "before 1970"},
		{[]File{{Path: "a", Digest: "sha256:zz"}}, "digest"},
		{[]File{{Path: "a", Digest: d, Mode: 0o4755}}, "mode"},
		// '-' and '.' sort before '/': the file and its directory are
		// not neighbours in plain byte order.
		{[]File{{Path: "a", Digest: d}, {Path: "a-b", Digest: d}, {Path: "a.txt", Digest: d}, {Path: "a/b", Digest: d}}, "also the directory"},
		{[]File{{Path: "x/a", Digest: d}, {Path: "x/a!", Digest: d}, {Path: "x/a/b/c", Digest: d}}, "also the directory"},
		{[]File{{Path: "b", Digest: d}, {Path: "a/b", Digest: d}, {Path: "b", Digest: d}}, "two files"},
		{[]File{{Path: "a", Digest: d, Size: MaxSize + 1}}, "over"},
		{[]File{{Path: "a", Digest: d, Size: -1}}, "negative"},
		{[]File{{Path: "a", Digest: digest.Digest("sha512:" + strings.Repeat("a", 128))}}, "digest"},
		{[]File{{Path: "a", Digest: digest.Digest(strings.ToUpper(string(d)))}}, "digest"},
	}
	for _, c := range cases {
		_, err := NewPackage(c.files, nil)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%+v: got %v, want ErrInvalid mentioning %q", c.files, err, c.mention)
		}
	}
	// Links are kept verbatim, as tar and squashfs keep them: absolute,
	// leaving the package, dangling, through other links.
	verbatim := []File{{Path: "abs", Symlink: "/etc/passwd"}, {Path: "up", Symlink: "../../etc"}, {Path: "a/b/c/l", Symlink: "../../.."},
		{Path: "a/b/c/m", Symlink: "l/../../../../etc/passwd"}, {Path: "dangling", Symlink: "no/such/file"}}
	m, err := NewPackage(verbatim, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range m.Files() {
		if want := verbatim[slices.IndexFunc(verbatim, func(v File) bool { return v.Path == f.Path })]; f.Symlink != want.Symlink {
			t.Errorf("%d: %s -> %q, want %q", i, f.Path, f.Symlink, want.Symlink)
		}
	}
}

// TestModTimes: a file's time is part of its package: recorded to the
// nanosecond, read back, changing the digest; a time opm cannot read in a
// package from elsewhere is shown as none, never refused.
func TestModTimes(t *testing.T) {
	d := digest.FromString("x")
	at := time.Date(2026, 11, 30, 12, 34, 56, 789012345, time.UTC)
	m1, err := NewPackage([]File{{Path: "a", Digest: d, ModTime: at}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := m1.Files()[0].ModTime; !got.Equal(at) {
		t.Fatalf("time %v read back as %v", at, got)
	}
	m2, _ := NewPackage([]File{{Path: "a", Digest: d, ModTime: at.Add(time.Nanosecond)}}, nil)
	m3, _ := NewPackage([]File{{Path: "a", Digest: d, ModTime: at}}, nil)
	_, d1, _ := m1.Encode()
	_, d2, _ := m2.Encode()
	_, d3, _ := m3.Encode()
	if d1 == d2 || d1 != d3 {
		t.Fatalf("digests %s %s %s: times must count, the same times give the same digest", d1, d2, d3)
	}
	body, _, _ := m1.Encode()
	for _, bad := range []string{"-5", "+5", "07", "x", "99999999999999999999"} {
		b := strings.Replace(string(body), FormatMTime(at), bad, 1)
		pm, err := ParseManifest([]byte(b))
		if err != nil {
			t.Errorf("time %q: the package is refused: %v", bad, err)
			continue
		}
		if f := pm.Files()[0]; !f.ModTime.IsZero() || f.BadModTime != bad {
			t.Errorf("time %q: read as %v (bad %q)", bad, f.ModTime, f.BadModTime)
		}
	}
}

func TestParseManifestRefuses(t *testing.T) {
	good, _, _ := samplePackage(t).Encode()
	if _, err := ParseManifest(good); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"not json":         `{"schemaVersion":`,
		"schema":           `{"schemaVersion":1,"config":{"digest":"` + string(EmptyDigest) + `"}}`,
		"title escapes":    strings.Replace(string(good), `"README.md"`, `"../../README.md"`, 1),
		"absolute title":   strings.Replace(string(good), `"README.md"`, `"/README.md"`, 1),
		"duplicate titles": strings.Replace(string(good), `"README.md"`, `"empty"`, 1),
		"bad mode":         strings.Replace(string(good), `"0644"`, `"rwx"`, 1),
		"negative size":    strings.Replace(string(good), `"size": 6`, `"size": -6`, 1),
		"link with a bidi": strings.Replace(string(good), `"dev.opm.file.symlink": "tool"`, `"dev.opm.file.symlink": "to\u202eol"`, 1),
		"absurd size":      strings.Replace(string(good), `"size": 6`, `"size": 4611686018427387905`, 1),
		"sizes overflow":   strings.Replace(strings.Replace(string(good), `"size": 6`, `"size": 4611686018427387904`, 1), `"size": 5`, `"size": 4611686018427387904`, 1),
		"int64 overflow":   strings.Replace(string(good), `"size": 6`, `"size": 9223372036854775808`, 1),
		"uppercase hex":    strings.Replace(string(good), EmptyDigest.Encoded(), strings.ToUpper(EmptyDigest.Encoded()), 1),
		"index type":       strings.Replace(string(good), MediaTypeManifest, MediaTypeIndex, 1),
		"file and dir":     strings.Replace(string(good), `"empty"`, `"README.md/x"`, 1),
		"manifests list":   strings.Replace(string(good), `"layers": [`, `"manifests": [], "layers": [`, 1),
		"two sizes":        strings.Replace(string(good), "\"size\": 0,\n      \"annotations\": {\n        \"dev.opm.file.mode\": \"0600\"", "\"size\": 7,\n      \"annotations\": {\n        \"dev.opm.file.mode\": \"0600\"", 1),
	}
	for name, in := range cases {
		if in == string(good) {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if _, err := ParseManifest([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

// Deep paths cost time in proportion to their length: checking that no
// file is also a directory once took time in proportion to the square
// (minutes for a manifest under MaxManifestSize). The test bounds no
// time (a bound on the clock fails on a loaded machine): a check gone
// quadratic again shows as a slow test, seconds here, or as the test
// binary's timeout.
func TestParseManifestDeepPaths(t *testing.T) {
	deep := strings.Repeat("d/", 2040)
	files := make([]File, 1000)
	for i := range files {
		files[i] = File{Path: fmt.Sprintf("%s%d", deep, i), Digest: EmptyFileDigest}
	}
	m, err := NewPackage(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseManifest(b); err != nil {
		t.Fatal(err)
	}
}

func TestCountDirs(t *testing.T) {
	for _, c := range []struct {
		paths []string
		want  int
	}{
		{nil, 0},
		{[]string{"a"}, 0},
		{[]string{"a/b/c"}, 2},
		{[]string{"a/b/x", "a/b/y", "a/c/z", "d"}, 3},
		{[]string{"a-b/x", "a/x", "ab/x"}, 3},
		{[]string{"a/b", "a/c/d", "a/c/e/f", "a/ce/g"}, 4},
	} {
		sorted := slices.Clone(c.paths)
		slices.SortFunc(sorted, comparePaths)
		if got := countDirs(sorted); got != c.want {
			t.Errorf("%v: %d directories, want %d", c.paths, got, c.want)
		}
	}
}

// A manifest of 2 MB whose deep paths make a million directories (each
// costs the mount and pull memory) is refused; one just under the limit is
// not.
func TestParseManifestManyDirs(t *testing.T) {
	deep := strings.Repeat("a/", 2030)
	for _, c := range []struct {
		n  int
		ok bool
	}{{500, true}, {520, false}} { // 2031 directories each
		files := make([]File, c.n)
		for i := range files {
			files[i] = File{Path: fmt.Sprintf("%d/%sx", i, deep), Digest: EmptyFileDigest}
		}
		_, err := NewPackage(files, nil)
		if c.ok && err != nil || !c.ok && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "more than 1048576 directories")) {
			t.Errorf("%d paths: %v", c.n, err)
		}
	}
}

func FuzzManifestRoundTrip(f *testing.F) {
	f.Add("a/b", "c", uint16(0o644), "tool", int64(3))
	f.Add("x", "x/y", uint16(0o755), "", int64(0))
	f.Fuzz(func(t *testing.T, p1, p2 string, mode uint16, link string, size int64) {
		files := []File{
			{Path: p1, Mode: 0o777 & fileMode(mode), Size: size, Digest: digest.FromString(p1)},
			{Path: p2, Mode: 0o644, Symlink: link, Digest: digest.FromString(p2)},
		}
		m, err := NewPackage(files, map[string]string{"k": p1})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		b, d, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseManifest(b)
		if err != nil {
			t.Fatalf("canonical manifest does not parse back: %v\n%s", err, b)
		}
		again, err := NewPackage(back.Files(), back.Annotations)
		if err != nil {
			t.Fatal(err)
		}
		b2, d2, _ := again.Encode()
		if d2 != d || !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", b, b2)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"annotations":{"org.opencontainers.image.title":"a/../b"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		for _, file := range m.Files() {
			if ValidatePath(file.Path) != nil || filepath.IsAbs(file.Path) || strings.Contains(file.Path, "..") && ValidatePath(file.Path) != nil {
				t.Fatalf("unsafe path accepted: %q", file.Path)
			}
			if file.Symlink != "" && ValidateSymlink(file.Path, file.Symlink) != nil {
				t.Fatalf("unsafe symlink accepted: %q -> %q", file.Path, file.Symlink)
			}
		}
	})
}

func fileMode(m uint16) os.FileMode { return os.FileMode(m) }
