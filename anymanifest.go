package opm

import "encoding/json"

// Media types of the manifests other OCI clients push. opm keeps them byte
// for byte; only opm packages (MediaTypeManifest with a title per file) are
// shown as files.
const (
	MediaTypeIndex          = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// AnyManifest is the shape shared by every manifest an OCI registry keeps:
// an image manifest (OCI or Docker v2), or an index (OCI or Docker manifest
// list). Only the fields a registry needs are decoded.
type AnyManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *Descriptor       `json:"config,omitempty"`
	Layers        []Descriptor      `json:"layers,omitempty"`
	Manifests     []Descriptor      `json:"manifests,omitempty"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`

	pkg      *Manifest // the OCI image manifest as ParseManifest read it
	files    *Manifest // FilesView
	filesErr error     // why files is nil for an image manifest
}

// Package is an OCI image manifest as ParseManifest reads it (ParseAnyManifest
// has checked it so); nil for any other kind.
func (m *AnyManifest) Package() *Manifest { return m.pkg }

// IsIndex reports whether m lists other manifests rather than blobs.
func (m *AnyManifest) IsIndex() bool {
	return m.MediaType == MediaTypeIndex || m.MediaType == MediaTypeDockerList
}

// ParseAnyManifest decodes and checks the manifest of any OCI client: the
// one validation of a manifest, wherever it enters (docs/design.md §2).
// contentType is the media type the client declared ("" if none); it must
// agree with what the bytes say (their mediaType, else their shape), and
// the bytes are checked as what they say. The result's MediaType is always
// set. Digests must be sha256 (the only algorithm opm stores) and
// sizes non-negative; an OCI image manifest must also pass ParseManifest, so
// that a file title can never escape a directory of the mount.
func ParseAnyManifest(b []byte, contentType string) (*AnyManifest, error) {
	if len(b) > MaxManifestSize {
		return nil, Errorf(ErrInvalid, "manifest of %d bytes is over the %d-byte limit", len(b), MaxManifestSize)
	}
	var m AnyManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, Errorf(ErrInvalid, "malformed manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return nil, Errorf(ErrInvalid, "manifest schemaVersion %d, want 2", m.SchemaVersion)
	}
	// The bytes alone say what a manifest is — its mediaType, else its
	// shape — as every later reading of the stored bytes will take them;
	// the type a client declares must agree, and never changes the checks.
	declared := m.MediaType
	switch {
	case m.MediaType == "" && m.Manifests != nil:
		m.MediaType = MediaTypeIndex
	case m.MediaType == "":
		m.MediaType = MediaTypeManifest
	}
	switch {
	case contentType == "" || contentType == m.MediaType:
	case declared == "":
		return nil, Errorf(ErrInvalid, "manifest without a mediaType reads as %s, not the %s it was sent as (name its mediaType)", m.MediaType, contentType)
	default:
		return nil, Errorf(ErrInvalid, "manifest mediaType %q but sent as %q", m.MediaType, contentType)
	}
	switch m.MediaType {
	case MediaTypeManifest, MediaTypeDockerManifest:
		if m.Config == nil {
			return nil, Errorf(ErrInvalid, "image manifest without a config")
		}
		if len(m.Manifests) > 0 {
			return nil, Errorf(ErrInvalid, "image manifest with a manifests list")
		}
	case MediaTypeIndex, MediaTypeDockerList:
		if m.Config != nil || len(m.Layers) > 0 {
			return nil, Errorf(ErrInvalid, "index with a config or layers")
		}
	default:
		return nil, Errorf(ErrInvalid, "manifest media type %q is not an OCI or Docker v2 manifest or index", m.MediaType)
	}
	if err := CheckName("manifest artifactType", m.ArtifactType); err != nil {
		return nil, err
	}
	if err := checkDescriptors(m.Config, m.Layers, m.Manifests, m.Subject); err != nil {
		return nil, err
	}
	if m.MediaType == MediaTypeManifest {
		pm, err := ParseManifest(b)
		if err != nil {
			return nil, err
		}
		m.pkg = pm
	}
	m.files, m.filesErr = m.filesView()
	return &m, nil
}

// Blobs lists the blobs an image manifest names (config and layers, each
// once) but foreign layers (Descriptor.Foreign); an index names none. Every
// one is in the registry before the manifest is committed (docs/design.md
// §4).
func (m *AnyManifest) Blobs() []Descriptor {
	if m.IsIndex() || m.Config == nil {
		return nil
	}
	return held(append([]Descriptor{*m.Config}, m.Layers...))
}

// Size is the total size of what the manifest names.
func (m *AnyManifest) Size() int64 { return sumSizes(m.Layers) + sumSizes(m.Manifests) }
