package integration

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSelectorMeansTheSame: one selector grammar, one meaning, in every
// command that takes one: opm cache pin, opm sync --include (a filtered
// mirror), opm sync --prefetch and opm ls choose the same set of tags for
// the same selector. (opm sync --include acme used to choose nothing while
// opm cache pin acme chose all of acme.)
func TestSelectorMeansTheSame(t *testing.T) {
	dir := t.TempDir()
	bare := func(name string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("git", "init", "-q", "--bare", "--initial-branch=main", p).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v %s", err, out)
		}
		return p
	}
	bucket := func(name string) string { return "file://" + filepath.Join(dir, name) + "?create_dir=1" }
	publisher, reader := filepath.Join(dir, "publisher"), filepath.Join(dir, "reader")
	mustOpm(t, publisher, "remote", "add", "origin", "--meta", bare("origin.git"), "--blobs", bucket("origin-blobs"))
	mustOpm(t, publisher, "remote", "add", "mirror", "--meta", bare("mirror.git"), "--blobs", bucket("mirror-blobs"))
	all := []string{"acme/web/site:v1", "acme/web/site:v1.1", "acme/web/site:v2-rc", "acme/tools/cli:v1", "acme/tools/cli:latest", "zeta/x/y:v1"}
	for i, ref := range all {
		mustOpm(t, publisher, "push", ref, pkgDir(t, uint64(i), 2, 100))
	}
	mustOpm(t, reader, "remote", "add", "origin", "--meta", filepath.Join(dir, "origin.git"), "--blobs", bucket("origin-blobs"))
	mustOpm(t, reader, "sync")

	for _, c := range []struct {
		sel  string
		want []string
	}{
		{"acme", all[:5]},
		{"acme/web", all[:3]},
		{"acme/web/site", all[:3]},
		{"acme/web/site:v1*", all[:2]},
		{"acme/*/*:v1", []string{"acme/web/site:v1", "acme/tools/cli:v1"}},
		{"*/*/cli", all[3:5]},
		{"*", all},
		{"zeta/x/y:v1", all[5:]},
		{"nobody", nil},
	} {
		want := slices.Sorted(slices.Values(c.want))
		got := map[string][]string{}

		var pin struct{ Tags []string }
		decode(t, mustOpm(t, publisher, "cache", "pin", c.sel, "--json").stdout, &pin)
		got["cache pin"] = pin.Tags
		mustOpm(t, publisher, "cache", "unpin", c.sel)

		var mirror struct{ Tags []string }
		decode(t, mustOpm(t, publisher, "sync", "origin", "mirror", "--include", c.sel, "--dry-run", "--json").stdout, &mirror)
		got["sync --include"] = mirror.Tags

		var prefetch struct {
			Tags []string `json:"prefetched_tags"`
		}
		decode(t, mustOpm(t, reader, "sync", "--prefetch", c.sel, "--json").stdout, &prefetch)
		got["sync --prefetch"] = prefetch.Tags

		var ls struct{ Tags []struct{ Ref string } }
		decode(t, mustOpm(t, reader, "ls", "--tags", c.sel, "--json").stdout, &ls)
		for _, tg := range ls.Tags {
			got["ls --tags"] = append(got["ls --tags"], tg.Ref)
		}
		for cmd, tags := range got {
			if tags := slices.Sorted(slices.Values(tags)); !slices.Equal(tags, want) {
				t.Errorf("%s %q chose %v, want %v", cmd, c.sel, tags, want)
			}
		}
	}
	// A selector with globs lists its tags without --tags; a node lists
	// its level.
	if out := mustOpm(t, reader, "ls", "acme/*/site:v1*").stdout; strings.Count(out, "\n") != 2 || !strings.Contains(out, "acme/web/site:v1.1 ") {
		t.Errorf("ls of a selector:\n%s", out)
	}
	if out := mustOpm(t, reader, "ls", "acme").stdout; out != "tools\nweb\n" {
		t.Errorf("ls acme:\n%s", out)
	}
	// One grammar, one refusal.
	for _, args := range [][]string{
		{"cache", "pin", "Acme"}, {"sync", "origin", "mirror", "--include", "Acme"}, {"sync", "--prefetch", "Acme"}, {"ls", "Acme"},
	} {
		wantCode(t, syncOpm(t, reader, args...), 2, `selector "Acme": namespace "Acme" is not a valid name`)
	}
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
}
