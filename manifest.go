package opm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
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
	// AnnotationMTime is a file's modification time: nanoseconds since
	// 1970-01-01 UTC, in decimal.
	AnnotationMTime = "dev.opm.file.mtime"

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
	// Platform is an index's entry's: what the manifest runs on.
	Platform *Platform `json:"platform,omitempty"`
}

// Platform is the platform of an index's manifest (OCI image index).
type Platform struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	OSVersion    string   `json:"os.version,omitempty"`
	OSFeatures   []string `json:"os.features,omitempty"`
	Variant      string   `json:"variant,omitempty"`
}

// String is os/architecture[/variant], "" for none.
func (p *Platform) String() string {
	if p == nil || p.OS == "" && p.Architecture == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
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
	Symlink   string        // target, for a symbolic link, kept verbatim
	// ModTime is the file's modification time; zero when the package
	// records none (then readers show the time its tag was set).
	ModTime time.Time
	// BadModTime is a recorded time that could not be read (from a
	// package made elsewhere): ModTime is zero then.
	BadModTime string
	// Chunks is the blob of the file's chunk list (MediaTypeChunks), nil
	// when it has none (chunks.go).
	Chunks *Descriptor
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
	var lists []Descriptor // the files' chunk lists, each once
	listed := map[digest.Digest]bool{}
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
		if !f.ModTime.IsZero() {
			a[AnnotationMTime] = FormatMTime(f.ModTime)
		}
		if f.Chunks != nil {
			a[AnnotationChunks] = f.Chunks.Digest.String()
			if !listed[f.Chunks.Digest] {
				listed[f.Chunks.Digest] = true
				lists = append(lists, Descriptor{MediaType: MediaTypeChunks, Digest: f.Chunks.Digest, Size: f.Chunks.Size})
			}
		}
		m.Layers = append(m.Layers, Descriptor{MediaType: mt, Digest: f.Digest, Size: f.Size, Annotations: a})
	}
	sort.Slice(m.Layers, func(i, j int) bool {
		return m.Layers[i].Annotations[AnnotationTitle] < m.Layers[j].Annotations[AnnotationTitle]
	})
	// The chunk lists, untitled, after the files, by digest.
	slices.SortFunc(lists, func(a, b Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	m.Layers = append(m.Layers, lists...)
	if err := checkTree(m.Layers); err != nil {
		return nil, err
	}
	return m, nil
}

func (f File) validate() error {
	if err := ValidatePath(f.Path); err != nil {
		return err
	}
	if f.Mode&^fs.ModePerm != 0 {
		return Errorf(ErrInvalid, "file %q: mode %v has bits other than permissions", f.Path, f.Mode)
	}
	if err := CheckName(fmt.Sprintf("file %q: media type", f.Path), f.MediaType); err != nil {
		return err
	}
	if f.Size < 0 || f.Size > MaxSize {
		return Errorf(ErrInvalid, "file %q: size %d is negative or over %d", f.Path, f.Size, int64(MaxSize))
	}
	if _, err := ParseDigest(string(f.Digest)); err != nil {
		return fmt.Errorf("file %q: %w", f.Path, err)
	}
	if f.Symlink != "" {
		if err := ValidateSymlink(f.Path, f.Symlink); err != nil {
			return err
		}
	}
	if f.Chunks != nil {
		if err := checkChunksOf(f.Path, f.Symlink != "", f.Chunks.Digest.String(), f.Chunks.Size); err != nil {
			return err
		}
	}
	if t := f.ModTime; !t.IsZero() && (t.Before(MinMTime) || t.After(MaxMTime)) {
		return Errorf(ErrInvalid, "file %q: modification time %s is before 1970 or after %s (--mtime clamps times)", f.Path, t.UTC().Format(time.RFC3339), MaxMTime.Format(time.RFC3339))
	}
	return nil
}

// MinMTime and MaxMTime bound a recorded modification time: from 1970 to
// what nanoseconds since then in an int64 reach (April 2262).
var (
	MinMTime = time.Unix(0, 0).UTC()
	MaxMTime = time.Unix(0, math.MaxInt64).UTC()
)

// FormatMTime renders a modification time as the dev.opm.file.mtime
// annotation.
func FormatMTime(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// ParseMTime parses a dev.opm.file.mtime annotation: nanoseconds since
// 1970, in decimal, without a sign or leading zeros.
func ParseMTime(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || len(s) > 1 && s[0] == '0' || strings.TrimLeft(s, "0123456789") != "" {
		return time.Time{}, Errorf(ErrInvalid, "file time %q must be nanoseconds since 1970 in decimal", s)
	}
	return time.Unix(0, n).UTC(), nil
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
	if err := CheckName("manifest artifactType", m.ArtifactType); err != nil {
		return nil, err
	}
	// A subject is checked where a manifest enters (ParseAnyManifest),
	// not when one is read back.
	if err := checkDescriptors(&m.Config, m.Layers, nil, nil); err != nil {
		return nil, err
	}
	var lists map[string]Descriptor // the chunk lists by digest, once one is named
	for i := range m.Layers {
		l := &m.Layers[i]
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
		if c, ok := l.Annotations[AnnotationChunks]; ok {
			if lists == nil {
				lists = chunkLayers(m.Layers)
			}
			list, found := lists[c]
			_, link := l.Annotations[AnnotationSymlink]
			if !found && !link {
				return nil, Errorf(ErrInvalid, "layer %d: file %q: its chunk list %q is no untitled layer of type %s", i, t, c, MediaTypeChunks)
			}
			if err := checkChunksOf(t, link, c, list.Size); err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
		}
	}
	if err := checkTree(m.Layers); err != nil {
		return nil, err
	}
	return &m, nil
}

// checkDescriptors is the check of the descriptors of every manifest,
// whatever its kind: each digest a valid sha256 and each size in range
// (errors name "config", "layer 3", "manifest 0" or "subject"), one size
// for each digest (a digest is one content: a second size would go
// unchecked where blobs are checked once per digest), and the sizes of the
// config, layers and manifests adding up to at most MaxSize (a subject's
// size is another manifest's, not counted). Nil descriptors are absent.
func checkDescriptors(config *Descriptor, layers, manifests []Descriptor, subject *Descriptor) error {
	var total int64
	type first struct {
		what string
		size int64
	}
	sizes := map[digest.Digest]first{}
	if config != nil {
		if err := config.check("config"); err != nil {
			return err
		}
		total = config.Size
		sizes[config.Digest] = first{"config", config.Size}
	}
	for _, list := range []struct {
		what string
		ds   []Descriptor
	}{{"layer", layers}, {"manifest", manifests}} {
		for i := range list.ds {
			d := &list.ds[i]
			what := fmt.Sprintf("%s %d", list.what, i)
			if err := d.check(what); err != nil {
				return err
			}
			if f, ok := sizes[d.Digest]; !ok {
				sizes[d.Digest] = first{what, d.Size}
			} else if f.size != d.Size {
				return Errorf(ErrInvalid, "manifest %s: %s has %d bytes, but %s gives it %d (one digest, one size)", what, d.Digest, d.Size, f.what, f.size)
			}
			if err := addSize(&total, d.Size); err != nil {
				return err
			}
		}
	}
	if subject != nil {
		return subject.check("subject")
	}
	return nil
}

// Foreign reports a layer the registry does not hold: one of a
// "non-distributable" (Docker: "foreign") media type that is no file of the
// package, having no title; its content is elsewhere (image-spec before 1.1:
// its urls). A titled layer is a file whatever its type: held and checked
// like any other.
func (d Descriptor) Foreign() bool {
	if _, titled := d.Annotations[AnnotationTitle]; titled {
		return false
	}
	return strings.Contains(d.MediaType, ".nondistributable.") || strings.Contains(d.MediaType, ".foreign.")
}

func (d *Descriptor) check(what string) error {
	if _, err := ParseDigest(string(d.Digest)); err != nil {
		return fmt.Errorf("manifest %s: %w", what, err)
	}
	// The page shows media and artifact types: text that names a type
	// follows the rule of names.
	if err := CheckName("manifest "+what+" mediaType", d.MediaType); err != nil {
		return err
	}
	if err := CheckName("manifest "+what+" artifactType", d.ArtifactType); err != nil {
		return err
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
	var lists map[string]Descriptor
	for _, l := range m.Layers {
		t, ok := l.Annotations[AnnotationTitle]
		if !ok {
			continue
		}
		mode := fs.FileMode(0o644)
		if s, ok := l.Annotations[AnnotationMode]; ok {
			mode, _ = ParseMode(s) // checked by ParseManifest
		}
		f := File{
			Path: t, Mode: mode, Size: l.Size, Digest: l.Digest,
			MediaType: l.MediaType, Symlink: l.Annotations[AnnotationSymlink],
		}
		if c, ok := l.Annotations[AnnotationChunks]; ok {
			if lists == nil {
				lists = chunkLayers(m.Layers)
			}
			if list, found := lists[c]; found { // checked by ParseManifest
				f.Chunks = &list
			}
		}
		if s, ok := l.Annotations[AnnotationMTime]; ok {
			// A time opm cannot read is no reason to refuse the
			// package: it is shown without it.
			if mt, err := ParseMTime(s); err == nil {
				f.ModTime = mt
			} else {
				f.BadModTime = s
			}
		}
		files = append(files, f)
	}
	return files
}

// Size is the total size of the package's layers.
func (m *Manifest) Size() int64 { return sumSizes(m.Layers) }

// Blobs lists every blob the manifest names but foreign layers: config and
// layers, each once, as bare descriptors (media type, digest and size).
func (m *Manifest) Blobs() []Descriptor {
	out := held(append([]Descriptor{m.Config}, m.Layers...))
	for i, d := range out {
		out[i] = Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
	}
	return out
}

// held returns the blobs of ds the registry holds: without foreign layers
// and repeated digests (the first of each kept).
func held(ds []Descriptor) []Descriptor {
	seen := map[digest.Digest]bool{}
	var out []Descriptor
	for _, d := range ds {
		if !seen[d.Digest] && !d.Foreign() {
			seen[d.Digest] = true
			out = append(out, d)
		}
	}
	return out
}

// sumSizes adds up the sizes of ds.
func sumSizes(ds []Descriptor) int64 {
	var n int64
	for _, d := range ds {
		n += d.Size
	}
	return n
}

// checkChunksOf checks that a file (at path; link if it is a symbolic
// link) may name the chunk list d of size bytes.
func checkChunksOf(path string, link bool, d string, size int64) error {
	if link {
		return Errorf(ErrInvalid, "file %q: a symbolic link has no chunk list", path)
	}
	if _, err := ParseDigest(d); err != nil {
		return fmt.Errorf("file %q: chunk list: %w", path, err)
	}
	if size <= 0 || size > MaxChunkListSize {
		return Errorf(ErrInvalid, "file %q: chunk list of %d bytes: want 1 to %d", path, size, MaxChunkListSize)
	}
	return nil
}

// chunkLayers are the untitled layers of chunk lists, by digest.
func chunkLayers(layers []Descriptor) map[string]Descriptor {
	out := map[string]Descriptor{}
	for _, l := range layers {
		if _, titled := l.Annotations[AnnotationTitle]; !titled && l.MediaType == MediaTypeChunks {
			out[string(l.Digest)] = Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
		}
	}
	return out
}
