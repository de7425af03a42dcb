package layout

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
)

func TestPaths(t *testing.T) {
	repo := opm.Repository{Namespace: "acme", Project: "web", Name: "site"}
	d := digest.FromString("x")
	for _, c := range []struct{ got, want string }{
		{TagPath(repo, "v1.2.0"), "acme/web/site/tags/v1.2.0.json"},
		{TagsDir(repo), "acme/web/site/tags"},
		{ManifestsDir(repo), "acme/web/site/manifests"},
		{ManifestPath(repo, d), "acme/web/site/manifests/" + d.Encoded() + ".json"},
		{MetaPath([]string{"acme"}), "acme/namespace.json"},
		{MetaPath([]string{"acme", "web"}), "acme/web/project.json"},
		{MetaPath([]string{"acme", "web", "site"}), "acme/web/site/repository.json"},
	} {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
	}
	// Every path the layout makes parses back to what made it.
	for _, ref := range []opm.Reference{{Repository: repo, Tag: "v1.2.0"}, {Repository: repo, Digest: d}} {
		p := TagPath(repo, ref.Tag)
		if ref.Tag == "" {
			p = ManifestPath(repo, d)
		}
		got, err := Parse(p)
		if err != nil || !got.IsManifest() || got.Ref != ref {
			t.Errorf("Parse(%q) = %+v, %v; want %s", p, got, err, ref)
		}
	}
}

func TestParse(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, c := range []struct {
		path string
		kind Role
		ref  string
		bad  bool
	}{
		{"a/b/c/tags/v1.json", RoleTag, "a/b/c:v1", false},
		{"a/b/c/manifests/" + hex + ".json", RoleManifest, "a/b/c@sha256:" + hex, false},
		{"a/namespace.json", RoleMeta, "", false},
		{"a/b/project.json", RoleMeta, "", false},
		{"a/b/c/repository.json", RoleMeta, "", false},
		{"a/b/c/tags/v1.txt", RoleOther, "", false},
		{"a/b/c/tags", RoleOther, "", false},
		{"a/b/c/other/v1.json", RoleOther, "", false},
		{".gitattributes", RoleOther, "", false},
		{"A/b/c/tags/v1.json", RoleTag, "", true},            // a bad namespace
		{"a/b/c/tags/.v1.json", RoleTag, "", true},           // a bad tag
		{"a/b/c/manifests/abc.json", RoleManifest, "", true}, // not a digest
		{"A/namespace.json", RoleMeta, "", true},
	} {
		p, err := Parse(c.path)
		if c.bad != (err != nil) || c.bad && !errors.Is(err, opm.ErrInvalid) {
			t.Errorf("Parse(%q): error %v, want bad=%v", c.path, err, c.bad)
		}
		if p.Role != c.kind || c.ref != "" && p.Ref.String() != c.ref {
			t.Errorf("Parse(%q) = kind %d ref %s, want kind %d ref %s", c.path, p.Role, p.Ref, c.kind, c.ref)
		}
	}
	if tag, ok := TagOfEntry(Entry{Name: "v1.json"}); !ok || tag != "v1" {
		t.Errorf("TagOfEntry(v1.json) = %q %v", tag, ok)
	}
	for _, e := range []Entry{{Name: "v1.json", Dir: true}, {Name: "v1"}, {Name: "-x.json"}} {
		if _, ok := TagOfEntry(e); ok {
			t.Errorf("TagOfEntry(%+v) accepted", e)
		}
	}
}

func TestFactsRoundTrip(t *testing.T) {
	f := Facts{Digest: digest.FromString("a"), Previous: digest.FromString("b"), Source: "a/b/c:v1", SyncedFrom: "/m.git@0123", Via: "oci"}
	got := map[string]string{}
	var keys []string
	f.Trailers(func(k, v string) { got[k] = v; keys = append(keys, k) })
	if back := ParseFacts(func(k string) string { return got[k] }); back != f {
		t.Fatalf("facts %+v read back as %+v", f, back)
	}
	if got := strings.Join(keys, " "); got != "Opm-Digest Opm-Previous Opm-Source Opm-Synced-From Opm-Via" {
		t.Fatalf("trailer order %s", got)
	}
	keys = nil
	Facts{Previous: f.Previous}.Trailers(func(k, v string) { keys = append(keys, k) })
	if len(keys) != 1 || keys[0] != TrailerPrevious {
		t.Fatalf("empty facts written: %v", keys)
	}
}
