package opm

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseAnyManifest(t *testing.T) {
	d := `{"mediaType":"application/octet-stream","digest":"` + testDigest + `","size":3}`
	good := []struct {
		name, body, ct, want string
		blobs                int
	}{
		{"oci image", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + d + `,"layers":[` + d + `]}`, "", MediaTypeManifest, 1},
		{"no mediaType, from header", `{"schemaVersion":2,"config":` + d + `,"layers":[]}`, MediaTypeManifest, MediaTypeManifest, 1},
		{"docker image", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":` + d + `,"layers":[]}`, "", MediaTypeDockerManifest, 1},
		{"oci index", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + d + `]}`, MediaTypeIndex, MediaTypeIndex, 0},
		{"index guessed", `{"schemaVersion":2,"manifests":[]}`, "", MediaTypeIndex, 0},
		{"docker list", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[` + d + `]}`, "", MediaTypeDockerList, 0},
		{"unknown fields kept", `{"schemaVersion":2,"config":` + d + `,"layers":[],"x":{"y":1}}`, "", MediaTypeManifest, 1},
	}
	for _, c := range good {
		m, err := ParseAnyManifest([]byte(c.body), c.ct)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if m.MediaType != c.want || len(m.Blobs()) != c.blobs {
			t.Errorf("%s: mediaType %q blobs %d, want %q %d", c.name, m.MediaType, len(m.Blobs()), c.want, c.blobs)
		}
	}
	bad := []struct{ name, body, ct string }{
		{"not json", `blablabla`, ""},
		{"schema 1", `{"schemaVersion":1,"config":` + d + `}`, ""},
		{"type mismatch", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, MediaTypeManifest},
		{"unknown type", `{"schemaVersion":2,"mediaType":"text/plain","config":` + d + `}`, ""},
		{"no config", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`, ""},
		{"bad digest", `{"schemaVersion":2,"config":{"digest":"sha256:xyz","size":1},"layers":[]}`, ""},
		{"sha512", `{"schemaVersion":2,"config":{"digest":"sha512:` + strings.Repeat("a", 128) + `","size":1},"layers":[]}`, ""},
		{"negative size", `{"schemaVersion":2,"config":{"digest":"` + testDigest + `","size":-1},"layers":[]}`, ""},
		{"escaping title", `{"schemaVersion":2,"config":` + d + `,"layers":[{"digest":"` + testDigest + `","size":1,"annotations":{"org.opencontainers.image.title":"../x"}}]}`, ""},
		{"index with layers", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"layers":[` + d + `]}`, ""},
		{"bad subject", `{"schemaVersion":2,"manifests":[],"subject":{"digest":"nope","size":1}}`, ""},
		{"absurd size", `{"schemaVersion":2,"config":{"digest":"` + testDigest + `","size":4611686018427387905},"layers":[]}`, ""},
		{"sizes overflow", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":` + d + `,"layers":[{"digest":"` + testDigest + `","size":4611686018427387904},{"digest":"` + testDigest + `","size":4611686018427387904}]}`, ""},
		{"index sizes overflow", `{"schemaVersion":2,"manifests":[{"digest":"` + testDigest + `","size":4611686018427387904},{"digest":"` + testDigest + `","size":1}]}`, ""},
		{"uppercase hex", `{"schemaVersion":2,"config":{"digest":"sha256:` + strings.ToUpper(testDigest[7:]) + `","size":1},"layers":[]}`, ""},
		{"link with a control character", `{"schemaVersion":2,"config":` + d + `,"layers":[{"digest":"` + testDigest + `","size":0,"annotations":{"org.opencontainers.image.title":"a/l","dev.opm.file.symlink":"m\u0085x"}}]}`, ""},
		{"too big", `{"schemaVersion":2,"x":"` + strings.Repeat("a", MaxManifestSize) + `"}`, ""},
	}
	for _, c := range bad {
		if _, err := ParseAnyManifest([]byte(c.body), c.ct); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", c.name, err)
		}
	}
	// The decoder's error stays reachable.
	var se *json.SyntaxError
	if _, err := ParseAnyManifest([]byte(`{"schemaVersion":`), ""); !errors.As(err, &se) {
		t.Errorf("truncated manifest: %v, want a *json.SyntaxError inside", err)
	}
}

// FuzzParseAnyManifest: the one validation of a manifest. Whatever a
// client declares, what it accepts is exactly what a later reading of the
// stored bytes accepts (the type sent never switches checks off), and every
// title of what it accepts passes the path rules.
func FuzzParseAnyManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"`+testDigest+`","size":1},"layers":[]}`), MediaTypeManifest)
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"`+testDigest+`","size":1},"layers":[{"mediaType":"x","digest":"`+testDigest+`","size":1,"annotations":{"org.opencontainers.image.title":"../x"}}]}`), MediaTypeDockerManifest)
	f.Fuzz(func(t *testing.T, b []byte, ct string) {
		m, err := ParseAnyManifest(b, ct)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		for _, d := range append(m.Blobs(), m.Manifests...) {
			if _, err := ParseDigest(string(d.Digest)); err != nil || d.Size < 0 {
				t.Fatalf("accepted a bad descriptor %+v", d)
			}
		}
		stored, err := ParseAnyManifest(b, "")
		if err != nil || stored.MediaType != m.MediaType {
			t.Fatalf("accepted as %s when sent as %q, but the stored bytes read back as %v, %v", m.MediaType, ct, stored, err)
		}
		if pm := m.Package(); pm != nil {
			for _, f := range pm.Files() {
				if err := ValidatePath(f.Path); err != nil {
					t.Fatalf("accepted a title that breaks the rules: %v", err)
				}
			}
		}
	})
}
