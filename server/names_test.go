package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/openpm/opm"
)

// TestNamesRefusedAtTheDoor: a PUT of a manifest whose file title, media
// type or artifactType holds a code point that prints as nothing, breaks
// the line or turns the text around (the web page shows them all) is
// refused with one line naming the field and the code point, and nothing
// is committed.
func TestNamesRefusedAtTheDoor(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/names/app"
	cfg := e.putBlob(repo, []byte("{}"))
	layer := e.putBlob(repo, []byte("layer bytes"))
	for _, c := range []struct {
		name, artifactType, layerType, title string
		want                                 string
	}{
		{"zero-width title", "", opm.MediaTypeOctet, "read\u200bme", "package path"},
		{"hangul filler title", "", opm.MediaTypeOctet, "\u3164", "package path"},
		{"line separator title", "", opm.MediaTypeOctet, "a\u2028b", "package path"},
		{"bidi artifactType", "application/x\u202egpj", opm.MediaTypeOctet, "f", "manifest artifactType"},
		{"soft hyphen layer type", "", "text/pl\u00adain", "f", "manifest layer 0 mediaType"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := map[string]any{"schemaVersion": 2, "mediaType": opm.MediaTypeManifest,
				"config": map[string]any{"mediaType": opm.MediaTypeEmpty, "digest": cfg, "size": 2},
				"layers": []any{map[string]any{"mediaType": c.layerType, "digest": layer, "size": 11,
					"annotations": map[string]string{opm.AnnotationTitle: c.title}}}}
			if c.artifactType != "" {
				m["artifactType"] = c.artifactType
			}
			body, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			before := e.commits()
			b := expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", body, "Content-Type: "+opm.MediaTypeManifest), 400, "MANIFEST_INVALID")
			var res struct{ Errors []ociError }
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			msg := res.Errors[0].Message
			var code string
			for _, r := range c.title + c.artifactType + c.layerType {
				if r >= 0xa0 {
					code = fmt.Sprintf("%U", r)
				}
			}
			if !strings.Contains(msg, c.want) || !strings.Contains(msg, code) || strings.ContainsAny(msg, "\n\u2028\u202e") {
				t.Errorf("refusal %q: want one line naming %s and %s", msg, c.want, code)
			}
			if n := e.commits(); n != before {
				t.Errorf("a refused PUT committed")
			}
		})
	}
}
