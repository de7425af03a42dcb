package opm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
)

// Media types and annotations of the package format (docs/design.md §2).
const (
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeEmpty    = "application/vnd.oci.empty.v1+json"
	MediaTypeOctet    = "application/octet-stream"
	ArtifactType      = "application/vnd.opm.package.v1"

	AnnotationTitle   = "org.opencontainers.image.title"
	AnnotationCreated = "org.opencontainers.image.created"
	AnnotationMode    = "dev.opm.file.mode"
	AnnotationSymlink = "dev.opm.file.symlink"

	// MaxManifestSize bounds what is read back or accepted as a manifest.
	MaxManifestSize = 64 << 20
	// MaxPathLen bounds a file path inside a package.
	MaxPathLen = 4096
	// MaxDirs bounds the directories a package's paths make: each costs
	// the mount and pull memory and time, and a manifest under
	// MaxManifestSize can name tens of millions of them.
	MaxDirs = 1 << 20
	// MaxSize bounds the size of a blob and the total of a manifest's
	// sizes (4 EiB): beyond it a size is absurd, and a sum of them could
	// overflow.
	MaxSize = 1 << 62
)

// EmptyJSON is the content of the empty config blob "{}".
var EmptyJSON = []byte("{}")

// EmptyDigest is the digest of EmptyJSON; EmptyFileDigest that of no bytes.
var (
	EmptyDigest     = digest.FromBytes(EmptyJSON)
	EmptyFileDigest = digest.FromBytes(nil)
)

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	Data         []byte            `json:"data,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// Manifest is an OCI image manifest. Field order is the canonical key order.
type Manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        Descriptor        `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// File is one entry of a package.
type File struct {
	Path      string        // slash-separated, relative, clean
	Mode      fs.FileMode   // permission bits only
	Size      int64         // 0 for a symlink
	Digest    digest.Digest // EmptyFileDigest for a symlink
	MediaType string        // "" means application/octet-stream
	Symlink   string        // target, for a symbolic link
}

// NewPackage builds the canonical manifest of a set of files. It checks
// every path, mode and link target, refuses two files at one path, and sorts
// the layers by title.
func NewPackage(files []File, annotations map[string]string) (*Manifest, error) {
	m := &Manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeManifest,
		ArtifactType:  ArtifactType,
		Config:        Descriptor{MediaType: MediaTypeEmpty, Digest: EmptyDigest, Size: int64(len(EmptyJSON)), Data: EmptyJSON},
		Layers:        make([]Descriptor, 0, len(files)),
	}
	if len(annotations) > 0 {
		m.Annotations = make(map[string]string, len(annotations))
		for k, v := range annotations {
			if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, Errorf(ErrInvalid, "annotation %q: the key must be non-empty and both sides valid UTF-8", k)
			}
			m.Annotations[k] = v
		}
	}
	for _, f := range files {
		if f.Symlink != "" {
			f.Size, f.Digest = 0, EmptyFileDigest
		}
		if err := f.validate(); err != nil {
			return nil, err
		}
		mt := f.MediaType
		if mt == "" {
			mt = MediaTypeOctet
		}
		a := map[string]string{AnnotationTitle: f.Path, AnnotationMode: FormatMode(f.Mode)}
		if f.Symlink != "" {
			a[AnnotationSymlink] = f.Symlink
		}
		m.Layers = append(m.Layers, Descriptor{MediaType: mt, Digest: f.Digest, Size: f.Size, Annotations: a})
	}
	sort.Slice(m.Layers, func(i, j int) bool {
		return m.Layers[i].Annotations[AnnotationTitle] < m.Layers[j].Annotations[AnnotationTitle]
	})
	if err := checkTree(m.Layers); err != nil {
		return nil, err
	}
	return m, nil
}

// checkTree refuses duplicate titles, a title that is both a file and a
// directory of another, and more than MaxDirs directories. Sorted so that
// '/' comes before every other byte, the paths below a title directly
// follow it, so only neighbours need comparing: O(n log n) whatever the
// depth of the paths.
func checkTree(layers []Descriptor) error {
	titles := make([]string, 0, len(layers))
	for _, l := range layers {
		if t := l.Annotations[AnnotationTitle]; t != "" {
			titles = append(titles, t)
		}
	}
	slices.SortFunc(titles, comparePaths)
	if countDirs(titles) > MaxDirs {
		return Errorf(ErrInvalid, "package paths make more than %d directories", MaxDirs)
	}
	for i := 1; i < len(titles); i++ {
		prev, t := titles[i-1], titles[i]
		switch {
		case t == prev:
			return Errorf(ErrInvalid, "two files claim the package path %q", t)
		case len(t) > len(prev) && t[len(prev)] == '/' && strings.HasPrefix(t, prev):
			return Errorf(ErrInvalid, "package path %q is a file and also the directory of %q", prev, t)
		}
	}
	return nil
}

// countDirs counts the directories that sorted paths (in any byte order:
// the paths in one directory are neighbours) make.
func countDirs(sorted []string) int {
	dirs := 0
	for i, t := range sorted {
		// The directories of t that the previous path is not in.
		common := 0
		if i > 0 {
			prev := sorted[i-1]
			for common < len(prev) && common < len(t) && prev[common] == t[common] {
				common++
			}
			common = strings.LastIndexByte(t[:common], '/') + 1
		}
		dirs += strings.Count(t[common:], "/")
	}
	return dirs
}

// comparePaths orders paths byte by byte, with '/' before every other byte.
func comparePaths(a, b string) int {
	rank := func(c byte) int {
		if c == '/' {
			return -1
		}
		return int(c)
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return rank(a[i]) - rank(b[i])
		}
	}
	return len(a) - len(b)
}

func (f File) validate() error {
	if err := ValidatePath(f.Path); err != nil {
		return err
	}
	if f.Mode&^fs.ModePerm != 0 {
		return Errorf(ErrInvalid, "file %q: mode %v has bits other than permissions", f.Path, f.Mode)
	}
	if f.Size < 0 || f.Size > MaxSize {
		return Errorf(ErrInvalid, "file %q: size %d is negative or over %d", f.Path, f.Size, int64(MaxSize))
	}
	if _, err := ParseDigest(string(f.Digest)); err != nil {
		return fmt.Errorf("file %q: %w", f.Path, err)
	}
	if f.Symlink != "" {
		return ValidateSymlink(f.Path, f.Symlink)
	}
	return nil
}

// ValidatePath checks a file path inside a package: relative, slash
// separated, clean, valid UTF-8, no "." or ".." parts, no NUL, control
// characters or backslashes. Such a path can never leave the directory it is
// joined to.
func ValidatePath(p string) error {
	bad := func(why string) error { return Errorf(ErrInvalid, "package path %q %s", p, why) }
	switch {
	case p == "":
		return bad("is empty")
	case len(p) > MaxPathLen:
		return bad(fmt.Sprintf("is longer than %d bytes", MaxPathLen))
	case !utf8.ValidString(p):
		return bad("is not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return bad("is absolute")
	case strings.ContainsRune(p, '\\'):
		return bad("contains a backslash")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return bad("contains a control character")
		}
	}
	for part := range strings.SplitSeq(p, "/") {
		switch {
		case part == "":
			return bad("has an empty part")
		case part == "." || part == "..":
			return bad("has a '.' or '..' part")
		case len(part) > 255:
			return bad("has a part longer than 255 bytes")
		}
	}
	return nil
}

// ValidateSymlink checks that a link at linkPath pointing at target stays
// inside the package.
func ValidateSymlink(linkPath, target string) error {
	bad := func(why string) error {
		return Errorf(ErrInvalid, "symlink %q -> %q %s", linkPath, target, why)
	}
	switch {
	case target == "" || len(target) > MaxPathLen:
		return bad("has an empty or overlong target")
	case strings.HasPrefix(target, "/"):
		return bad("is absolute: only relative links inside the package are kept")
	case strings.ContainsAny(target, "\\"):
		return bad("contains a backslash")
	case !utf8.ValidString(target):
		return bad("is not valid UTF-8")
	}
	for _, r := range target {
		if r < 0x20 || r == 0x7f {
			return bad("contains a control character")
		}
	}
	// '..' only at the start: after a name, it climbs from wherever that
	// name leads, and another link of the package can lead higher than
	// the name reads ("a/b/l" -> "../../.." and "a/b/m" -> "l/../../x"
	// reads as "x" but is the package's parent's x).
	named := false
	for part := range strings.SplitSeq(target, "/") {
		switch part {
		case "", ".":
		case "..":
			if named {
				return bad("has a '..' after a name (it could climb out through another link): only leading '..' are kept")
			}
		default:
			named = true
		}
	}
	resolved := path.Join(path.Dir(linkPath), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return bad("escapes the package")
	}
	return nil
}

// FormatMode renders permission bits as the dev.opm.file.mode annotation.
func FormatMode(m fs.FileMode) string { return fmt.Sprintf("%04o", uint32(m.Perm())) }

// ParseMode parses a dev.opm.file.mode annotation.
func ParseMode(s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 || len(s) == 0 || len(s) > 4 {
		return 0, Errorf(ErrInvalid, "file mode %q must be octal permission bits such as 0644", s)
	}
	return fs.FileMode(v), nil
}

// Encode returns the canonical bytes of m and their digest: stable key
// order, two-space indent, no HTML escaping, one trailing newline. Map keys
// (annotations) are sorted by encoding/json.
func (m *Manifest) Encode() ([]byte, digest.Digest, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, "", err
	}
	b := buf.Bytes()
	return b, digest.FromBytes(b), nil
}

// ParseManifest decodes and checks manifest bytes read back from the
// registry. Unknown fields are tolerated (other OCI clients add them), but
// anything unsafe is refused: bad digests, negative sizes, titles that could
// escape a directory, duplicate titles, bad modes, escaping symlinks.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, Errorf(ErrInvalid, "manifest of %d bytes is over the %d-byte limit", len(b), MaxManifestSize)
	}
	var doc struct {
		Manifest
		// An index's list: with it, ParseAnyManifest (the OCI API,
		// sync) takes the same bytes for an index.
		Manifests json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, Errorf(ErrInvalid, "malformed manifest: %w", err)
	}
	m := doc.Manifest
	if doc.Manifests != nil && string(doc.Manifests) != "null" {
		return nil, Errorf(ErrInvalid, "manifest with a manifests list (an index?) is not a package")
	}
	if m.SchemaVersion != 2 {
		return nil, Errorf(ErrInvalid, "manifest schemaVersion %d, want 2", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != MediaTypeManifest {
		return nil, Errorf(ErrInvalid, "manifest mediaType %q, want %s", m.MediaType, MediaTypeManifest)
	}
	if err := m.Config.check("config"); err != nil {
		return nil, err
	}
	total := m.Config.Size
	for i := range m.Layers {
		l := &m.Layers[i]
		if err := l.check(fmt.Sprintf("layer %d", i)); err != nil {
			return nil, err
		}
		if err := addSize(&total, l.Size); err != nil {
			return nil, err
		}
		t, ok := l.Annotations[AnnotationTitle]
		if !ok {
			continue
		}
		if err := ValidatePath(t); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if s, ok := l.Annotations[AnnotationMode]; ok {
			if _, err := ParseMode(s); err != nil {
				return nil, fmt.Errorf("layer %d (%s): %w", i, t, err)
			}
		}
		if target, ok := l.Annotations[AnnotationSymlink]; ok {
			if err := ValidateSymlink(t, target); err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
		}
	}
	if err := checkTree(m.Layers); err != nil {
		return nil, err
	}
	return &m, nil
}

func (d *Descriptor) check(what string) error {
	if _, err := ParseDigest(string(d.Digest)); err != nil {
		return fmt.Errorf("manifest %s: %w", what, err)
	}
	return checkSize(what, d.Size)
}

// checkSize refuses a negative or absurd size.
func checkSize(what string, size int64) error {
	if size < 0 {
		return Errorf(ErrInvalid, "manifest %s: negative size %d", what, size)
	}
	if size > MaxSize {
		return Errorf(ErrInvalid, "manifest %s: size %d is over the %d-byte limit", what, size, int64(MaxSize))
	}
	return nil
}

// addSize adds size to the running total of a manifest's sizes (each
// checked by checkSize), refusing a total over MaxSize.
func addSize(total *int64, size int64) error {
	if size > MaxSize-*total {
		return Errorf(ErrInvalid, "manifest sizes add up to over %d bytes", int64(MaxSize))
	}
	*total += size
	return nil
}

// Files lists the package's files: layers with a title. Layers without one
// (other OCI artifacts) are not files of the package.
func (m *Manifest) Files() []File {
	files := make([]File, 0, len(m.Layers))
	for _, l := range m.Layers {
		t, ok := l.Annotations[AnnotationTitle]
		if !ok {
			continue
		}
		mode := fs.FileMode(0o644)
		if s, ok := l.Annotations[AnnotationMode]; ok {
			mode, _ = ParseMode(s) // checked by ParseManifest
		}
		files = append(files, File{
			Path: t, Mode: mode, Size: l.Size, Digest: l.Digest,
			MediaType: l.MediaType, Symlink: l.Annotations[AnnotationSymlink],
		})
	}
	return files
}

// Size is the total size of the package's layers.
func (m *Manifest) Size() int64 {
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// Blobs lists every blob the manifest names: config and layers, each once.
func (m *Manifest) Blobs() []Descriptor {
	seen := map[digest.Digest]bool{}
	var out []Descriptor
	for _, d := range append([]Descriptor{m.Config}, m.Layers...) {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			out = append(out, Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
		}
	}
	return out
}
