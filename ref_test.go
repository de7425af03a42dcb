package opm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestParseReference(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	good := []struct{ in, repo, tag, dig string }{
		{"cncf/kubernetes/kube-apiserver:v1.30.0", "cncf/kubernetes/kube-apiserver", "v1.30.0", ""},
		{"a/b/c:latest", "a/b/c", "latest", ""},
		{"a.b/c_d/e-f:_x", "a.b/c_d/e-f", "_x", ""},
		{"a/b/c:V1.0-RC.1_x", "a/b/c", "V1.0-RC.1_x", ""},
		{"a/b/c@sha256:" + hex, "a/b/c", "", "sha256:" + hex},
		{"a/b/c:" + strings.Repeat("x", 128), "a/b/c", strings.Repeat("x", 128), ""},
		{strings.Repeat("a", 64) + "/b/c:t", strings.Repeat("a", 64) + "/b/c", "t", ""},
	}
	for _, g := range good {
		r, err := ParseReference(g.in)
		if err != nil {
			t.Errorf("ParseReference(%q): %v", g.in, err)
			continue
		}
		if r.Repository.Path() != g.repo || r.Tag != g.tag || string(r.Digest) != g.dig {
			t.Errorf("ParseReference(%q) = %+v", g.in, r)
		}
		if r.String() != g.in {
			t.Errorf("String() = %q, want %q", r.String(), g.in)
		}
	}
	bad := []struct{ in, mention string }{
		{"", "want namespace"},
		{"a/b/c", "want namespace"},
		{"A/b/c:t", `namespace "A"`},
		{"a/B/c:t", `project "B"`},
		{"a/b/C:t", `repository "C"`},
		{"a/../c:t", `project ".."`},
		{"a//c:t", `project ""`},
		{"a/b:t", "3 parts"},
		{"a/b/c/d:t", "at most 3 parts"},
		{"a/b/c:", `tag ""`},
		{"a/b/c:.x", `tag ".x"`},
		{"a/b/c:-x", `tag "-x"`},
		{"a/b/c:x y", `tag "x y"`},
		{"a/b/c:" + strings.Repeat("x", 129), "tag"},
		{strings.Repeat("a", 65) + "/b/c:t", "namespace"},
		{"a/b/c:tä", "tag"},
		{"a/b/cä:t", "repository"},
		{"a/b/c :t", "repository"},
		{"a-/b/c:t", "namespace"},
		{"a/b/c@sha256:abc", "digest"},
		{"a/b/c@sha256:" + strings.ToUpper(hex), "digest"},
		{"a/b/c@md5:" + hex, "digest"},
		{"a/b/c:t\x00", "tag"},
		{".a/b/c:t", "namespace"},
	}
	for _, b := range bad {
		_, err := ParseReference(b.in)
		if err == nil {
			t.Errorf("ParseReference(%q): no error", b.in)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseReference(%q): %v is not ErrInvalid", b.in, err)
		}
		if !strings.Contains(err.Error(), b.mention) {
			t.Errorf("ParseReference(%q): error %q does not mention %q", b.in, err, b.mention)
		}
		if strings.HasSuffix(err.Error(), ErrInvalid.Error()) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseReference(%q): error is not one clean line: %q", b.in, err)
		}
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"a/b/c:t", "a/b/c@sha256:" + strings.Repeat("0", 64), "A/b/c:t", "a/../c:x", "a/b/c:..", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: error not ErrInvalid: %v", s, err)
			}
			return
		}
		if r.String() != s {
			t.Fatalf("%q: round trip gives %q", s, r.String())
		}
		for _, p := range []string{r.Repository.Namespace, r.Repository.Project, r.Repository.Name, r.Tag} {
			if strings.ContainsAny(p, "/\x00") || p == ".." || strings.HasPrefix(p, ".") {
				t.Fatalf("%q: accepted unsafe part %q", s, p)
			}
		}
	})
}

// TestReferenceJSON: a reference in JSON is its string, and reads back.
func TestReferenceJSON(t *testing.T) {
	for _, s := range []string{"acme/web/site:v1", "acme/web/site@sha256:" + strings.Repeat("ab", 32), "acme/web/site", ""} {
		var ref Reference
		if err := json.Unmarshal([]byte(strconv.Quote(s)), &ref); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		b, err := json.Marshal(struct {
			Ref  Reference  `json:"ref"`
			Repo Repository `json:"repo"`
		}{ref, ref.Repository})
		if err != nil {
			t.Fatal(err)
		}
		repo, _, _ := strings.Cut(strings.Split(s, "@")[0], ":")
		if want := fmt.Sprintf(`{"ref":%q,"repo":%q}`, s, repo); string(b) != want {
			t.Errorf("%s, want %s", b, want)
		}
	}
	var ref Reference
	if err := json.Unmarshal([]byte(`"Acme/x/y:v1"`), &ref); err == nil {
		t.Error("an invalid reference read from JSON")
	}
}
