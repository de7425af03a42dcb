package opmtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
)

// FuzzBlobs are the contents of the files of FuzzManifest's manifests:
// tiny, so that a fuzz iteration that pulls them stays cheap.
var FuzzBlobs = [][]byte{[]byte("alpha\n"), []byte("b"), {}}

// FuzzManifest builds manifest bytes, checking nothing, from a fuzzer's
// spec: one file per line, "TITLE" or "TITLE=>TARGET" (a symbolic link);
// the files' contents cycle through FuzzBlobs. A size other than -1
// replaces the first layer's size.
func FuzzManifest(spec string, size int64) []byte {
	m := opm.Manifest{
		SchemaVersion: 2,
		MediaType:     opm.MediaTypeManifest,
		ArtifactType:  opm.ArtifactType,
		Config:        opm.Descriptor{MediaType: opm.MediaTypeEmpty, Digest: opm.EmptyDigest, Size: 2},
		Layers:        []opm.Descriptor{},
	}
	for i, line := range strings.Split(spec, "\n") {
		title, target, isLink := strings.Cut(line, "=>")
		blob := FuzzBlobs[i%len(FuzzBlobs)]
		l := opm.Descriptor{MediaType: opm.MediaTypeOctet, Digest: digest.FromBytes(blob), Size: int64(len(blob)),
			Annotations: map[string]string{opm.AnnotationTitle: title, opm.AnnotationMode: "0644"}}
		if isLink {
			l.Digest, l.Size = opm.EmptyFileDigest, 0
			l.Annotations[opm.AnnotationSymlink] = target
			l.Annotations[opm.AnnotationMode] = "0777"
		}
		m.Layers = append(m.Layers, l)
	}
	if size != -1 && len(m.Layers) > 0 {
		m.Layers[0].Size = size
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// CheckSafeFiles is an oracle for the files of an accepted package,
// written apart from opm's own checks: every path is relative, clean and
// free of NUL, backslashes and control characters; no two files share a
// path; no file is also a directory of another; sizes are sane; and every
// symbolic link, resolved as the kernel would (through the package's other
// links), stays inside the package.
func CheckSafeFiles(files []opm.File) error {
	byPath := make(map[string]*opm.File, len(files))
	for i := range files {
		f := &files[i]
		p := f.Path
		if p == "" || p[0] == '/' || strings.ContainsAny(p, "\\\x00") {
			return fmt.Errorf("path %q is empty, absolute or holds a NUL or backslash", p)
		}
		for _, c := range []byte(p) {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("path %q holds a control character", p)
			}
		}
		for _, part := range strings.Split(p, "/") {
			if part == "" || part == "." || part == ".." {
				return fmt.Errorf("path %q has an empty, '.' or '..' part", p)
			}
		}
		if f.Size < 0 || f.Size > opm.MaxSize {
			return fmt.Errorf("path %q: size %d", p, f.Size)
		}
		if byPath[p] != nil {
			return fmt.Errorf("path %q twice", p)
		}
		byPath[p] = f
	}
	var total int64
	dirs := map[string]bool{}
	for _, f := range files {
		if total += f.Size; total < 0 || total > opm.MaxSize {
			return fmt.Errorf("sizes add up to %d", total)
		}
		for d := f.Path; ; {
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				break
			}
			d = d[:i]
			if byPath[d] != nil {
				return fmt.Errorf("%q is a file and the directory of %q", d, f.Path)
			}
			dirs[d] = true
		}
	}
	if len(dirs) > opm.MaxDirs {
		return fmt.Errorf("%d directories", len(dirs))
	}
	for _, f := range files {
		if f.Symlink == "" {
			continue
		}
		// Links are kept verbatim (absolute, leaving the package,
		// dangling): only the target's text is checked.
		if !utf8.ValidString(f.Symlink) || strings.ContainsAny(f.Symlink, "\x00") {
			return fmt.Errorf("symlink %q -> %q: not valid UTF-8, or a NUL", f.Path, f.Symlink)
		}
		for _, r := range f.Symlink {
			if unicode.IsControl(r) {
				return fmt.Errorf("symlink %q -> %q holds a control character", f.Path, f.Symlink)
			}
		}
	}
	return nil
}

// HostileSpecs are FuzzManifest specs of nasty packages, the seeds of the
// path-safety fuzz targets: each with a bad path must be refused; links
// are kept verbatim whatever they point at.
var HostileSpecs = []string{
	"a.txt\nbin/tool\nlib/link=>../bin/tool\nself=>.",
	"a/b/c/l=>../../..\na/b/c/x",
	"../escaped.txt",
	"a/../../escaped.txt",
	"a/..",
	"..",
	".",
	"./a",
	"/etc/passwd",
	"//etc/passwd",
	"a\\..\\..\\x",
	"C:\\x",
	"a\x00b",
	"a\nb\n",
	"a//b",
	"a/",
	"a/./b\na/b",
	"a\na",
	"a\na/b",
	"a/b\na",
	"x\x7f",
	"bad\xffutf8",
	"l=>../../../etc/passwd",
	"l=>/etc/passwd",
	"l=>a\\b",
	"l=>",
	"d/l=>..",
	"d/l=>../..",
	"a/b/c/l=>../../..\na/b/c/m=>l/../../../../etc/passwd",
	"l=>x/../../y",
	"l=>m/..\nm=>..",
	"a/l=>../b\nb/x\na/m=>l/../../x",
	strings.Repeat("d/", 2000) + "f",
	strings.Repeat("x", 256),
	"a/" + strings.Repeat("x", 255),
}
