package opm

import (
	"encoding/json"
	"strings"
)

// Reading any image manifest as a package of files (docs/design.md §2):
// the CLI (files, pull, tag), the mount and the web pages show what a
// manifest holds through its FilesView, whoever pushed it.

// Helm's media types (helm push writes a chart as an OCI artifact).
const (
	MediaTypeHelmConfig = "application/vnd.cncf.helm.config.v1+json"
	MediaTypeHelmChart  = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
	MediaTypeHelmProv   = "application/vnd.cncf.helm.chart.provenance.v1.prov"
	// AnnotationVersion is the manifest annotation helm sets to the
	// chart's version (and AnnotationTitle to its name).
	AnnotationVersion = "org.opencontainers.image.version"
	// ArtifactTypeChartFiles is the type of the manifest a push of a Helm
	// chart adds beside it, kept by digest with the chart as its subject:
	// the chart's Chart.yaml, values.yaml and README.md as files of their
	// own, which the mount and pull show beside the archive.
	ArtifactTypeChartFiles = "application/vnd.opm.helm.chart.files.v1"
)

// FilesView is the manifest read as a package of files, nil for an index
// (or a manifest whose names would not pass ParseManifest). An opm package
// is its titled layers. Any other image manifest — a container image, a
// Docker schema-2 manifest, a Helm chart, another OCI artifact — shows its
// titled layers under their titles, each untitled layer as a file named by
// its digest with an extension from its media type (sha256 hex + .tar.gz,
// .tar, .json …; a Helm chart's archive NAME-VERSION.tgz and its
// provenance NAME-VERSION.tgz.prov), and its config as config.json
// (Chart.json for Helm). Foreign layers, which the registry does not hold,
// are not files.
func (m *AnyManifest) FilesView() *Manifest { return m.files }

// FilesErr says why an image manifest has no FilesView: its names as files
// fail ParseManifest's checks.
func (m *AnyManifest) FilesErr() error { return m.filesErr }

// filesView builds FilesView once, when the manifest is parsed.
func (m *AnyManifest) filesView() (*Manifest, error) {
	if m.IsIndex() || m.Config == nil {
		return nil, nil
	}
	if m.pkg != nil && m.ArtifactType == ArtifactType {
		return m.pkg, nil // an opm package: its files are its titled layers
	}
	v := Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, ArtifactType: m.ArtifactType,
		Config: *m.Config, Annotations: m.Annotations}
	taken := map[string]bool{}
	for _, l := range m.Layers {
		if t, ok := l.Annotations[AnnotationTitle]; ok {
			taken[t] = true
		}
	}
	add := func(d Descriptor, name string) {
		if taken[name] {
			name = d.Digest.Encoded() + "-" + name
		}
		if taken[name] {
			return
		}
		taken[name] = true
		a := map[string]string{AnnotationTitle: name}
		for k, val := range d.Annotations {
			if k != AnnotationTitle {
				a[k] = val
			}
		}
		v.Layers = append(v.Layers, Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Annotations: a})
	}
	seen := map[string]bool{} // an untitled digest named twice is one file
	for _, l := range m.Layers {
		switch _, titled := l.Annotations[AnnotationTitle]; {
		case titled, l.MediaType == MediaTypeChunks: // a chunk list stays untitled: a file's, not a file
			v.Layers = append(v.Layers, l)
		case l.Foreign() || seen[l.Digest.String()]:
		default:
			seen[l.Digest.String()] = true
			add(l, m.layerName(l))
		}
	}
	switch {
	case m.Config.MediaType == MediaTypeHelmConfig:
		add(*m.Config, "Chart.json")
	case m.Config.MediaType != MediaTypeEmpty && m.Config.Size > 0 && strings.HasSuffix(m.Config.MediaType, "json"):
		add(*m.Config, "config.json")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return ParseManifest(b)
}

// layerExts are the extensions of untitled layers' files, by the end of
// their media type, the first that matches.
var layerExts = []struct{ suffix, ext string }{
	{"tar+gzip", ".tar.gz"}, {"tar.gzip", ".tar.gz"}, {"tar+zstd", ".tar.zst"}, {".tar", ".tar"},
	{"+gzip", ".gz"}, {".gzip", ".gz"}, {"json", ".json"},
}

// layerName names an untitled layer as a file.
func (m *AnyManifest) layerName(l Descriptor) string {
	chart := func() string {
		name, version := m.Annotations[AnnotationTitle], m.Annotations[AnnotationVersion]
		if name == "" || ValidatePath(name) != nil || strings.Contains(name, "/") {
			return "chart"
		}
		if version != "" && ValidatePath(version) == nil && !strings.Contains(version, "/") {
			return name + "-" + version
		}
		return name
	}
	switch l.MediaType {
	case MediaTypeHelmChart:
		return chart() + ".tgz"
	case MediaTypeHelmProv:
		return chart() + ".tgz.prov"
	}
	ext := ""
	for _, e := range layerExts {
		if strings.HasSuffix(l.MediaType, e.suffix) {
			ext = e.ext
			break
		}
	}
	if ext == "" && strings.HasPrefix(l.MediaType, "text/") {
		ext = ".txt"
	}
	return l.Digest.Encoded() + ext
}

// Kind names what a manifest holds, for people (the web pages, opm ls):
// "opm package", "container image", "helm chart", "index", an artifact's
// artifactType, else "artifact".
func (m *AnyManifest) Kind() string {
	switch {
	case m.IsIndex():
		return "index"
	case m.ArtifactType == ArtifactType:
		return "opm package"
	case m.ArtifactType != "":
		return m.ArtifactType
	case m.Config == nil:
		return "artifact"
	}
	switch mt := m.Config.MediaType; mt {
	case MediaTypeHelmConfig:
		return "helm chart"
	case "application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json":
		return "container image"
	case MediaTypeEmpty, "":
		return "artifact"
	default:
		return mt
	}
}
