package layout

import (
	"errors"
	"testing"

	"github.com/openpm/opm"
)

func ref(t *testing.T, s string) opm.Reference {
	t.Helper()
	r, err := opm.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSelector: one grammar, with the meaning every command gives it. A
// selector of fewer than three parts chooses everything below what it
// names (opm cache pin acme and opm sync --include acme choose the same).
func TestSelector(t *testing.T) {
	for _, c := range []struct {
		sel, ref string
		match    bool
	}{
		{"ns/p/r:v1", "ns/p/r:v1", true},
		{"ns/p/r:v1", "ns/p/r:v10", false},
		{"ns/p/r:v1.*", "ns/p/r:v1.2.0", true},
		{"ns/p/r:v1.*", "ns/p/r:v2.0", false},
		{"ns/p/r", "ns/p/r:anything", true},
		{"ns/p/r", "ns/p/rr:v1", false},
		{"ns/*", "ns/p/r:v1", true},
		{"ns/*", "nsx/p/r:v1", false},
		{"ns", "ns/p/r:v1", true},
		{"ns", "nsx/p/r:v1", false},
		{"ns/p", "ns/q/r:v1", false},
		{"*/*/r:v?", "a/b/r:v7", true},
		{"*", "a/b/c:v1", true},
		{"a/*/*", "a/b/c:v1", true},
		{"a/*/*", "x/b/c:v1", false},
		{"*/*/*:v*", "a/b/c:latest", false},
		{"ns/p/r", "ns/p/r@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", false},
	} {
		s, err := ParseSelector(c.sel)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", c.sel, err)
			continue
		}
		if got := s.Match(ref(t, c.ref)); got != c.match {
			t.Errorf("%q.Match(%q) = %v, want %v", c.sel, c.ref, got, c.match)
		}
	}
	for _, bad := range []string{"", "ns/[", "NS/p", "ns/p/r/x", "ns/p:v1", "ns//r", "ns/p/r:", "ns/p/r:a:b", "ns/p/r:.bad", "../x", "ns/p/"} {
		if _, err := ParseSelector(bad); !errors.Is(err, opm.ErrInvalid) {
			t.Errorf("ParseSelector(%q): %v, want an invalid-input error", bad, err)
		}
	}
}

func TestSelectorPrefix(t *testing.T) {
	for _, c := range []struct {
		sel  string
		node bool
	}{
		{"acme", true}, {"acme/web", true}, {"acme/web/site", true},
		{"acme/*", false}, {"acme/web/site:v1", false}, {"a?me", false},
	} {
		s, err := ParseSelector(c.sel)
		if err != nil {
			t.Fatal(err)
		}
		if _, node := s.Prefix(); node != c.node {
			t.Errorf("%q.Prefix() node %v, want %v", c.sel, node, c.node)
		}
	}
	s, _ := ParseSelector("acme/w*/site:v1")
	for _, c := range []struct {
		parts []string
		may   bool
	}{
		{nil, true}, {[]string{"acme"}, true}, {[]string{"other"}, false},
		{[]string{"acme", "web"}, true}, {[]string{"acme", "tools"}, false}, {[]string{"acme", "web", "site"}, true},
	} {
		if got := s.MayMatchBelow(c.parts); got != c.may {
			t.Errorf("MayMatchBelow(%v) = %v", c.parts, got)
		}
	}
}

func TestFilter(t *testing.T) {
	f, err := ParseFilter([]string{"acme", "tools/cli"}, []string{"acme/web/site:*-rc*"})
	if err != nil {
		t.Fatal(err)
	}
	for r, want := range map[string]bool{
		"acme/web/site:v1":     true,
		"acme/web/site:v1-rc1": false,
		"tools/cli/cli:v3":     true,
		"tools/x/y:v1":         false,
	} {
		if got := f.Match(ref(t, r)); got != want {
			t.Errorf("Match(%s) = %v", r, got)
		}
	}
	if !(Filter{}).All() || !(Filter{}).Match(ref(t, "a/b/c:v")) {
		t.Error("the empty filter does not choose everything")
	}
	if _, err := ParseFilter(nil, []string{"A"}); !errors.Is(err, opm.ErrInvalid) {
		t.Errorf("bad exclude: %v", err)
	}
}
