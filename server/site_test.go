package server

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/openpm/opm"
)

// TestWriteSiteExact: a static site is exact. A second run over the same
// head writes nothing; after a tag and a whole repository are removed, their
// pages and JSON are gone (their directories too) and nothing else changed
// but what names them; a file of the directory no run made stays. Every
// link of every page leads to a file of the site, each time.
func TestWriteSiteExact(t *testing.T) {
	e := newEnv(t, Options{})
	e.pushPackage("acme/web/site:v1", map[string]string{"index.html": "one"})
	e.pushPackage("acme/web/site:v2", map[string]string{"index.html": "two"})
	e.pushPackage("acme/tools/cli:1.0", map[string]string{"cli": "x"})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "CNAME"), []byte("opm.example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	site := func() *SiteResult {
		t.Helper()
		res, err := WriteSite(context.Background(), e.reg, dir, SiteOptions{BlobURL: "https://blobs.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		checkLinks(t, dir)
		return res
	}
	first := site()
	if first.Written != first.Files || first.Files <= first.Pages+first.JSON || first.Removed != 0 {
		t.Errorf("first run: %+v; want every file written: pages, JSON, manifests, style", first)
	}
	if page, _ := os.ReadFile(filepath.Join(dir, "acme/web/site/tags/v1/index.html")); !strings.Contains(string(page), "opm pull acme/web/site:v1 -o DIR") {
		t.Error("the tag page does not show the pull command as opm takes it")
	}
	before := snapshot(t, dir)
	if again := site(); again.Written != 0 || again.Removed != 0 {
		t.Errorf("second run over the same head: %+v; want nothing written or removed", again)
	}
	if after := snapshot(t, dir); !mapsEqual(before, after) {
		t.Error("the second run changed the directory")
	}

	ctx := context.Background()
	for _, ref := range []string{"acme/web/site:v2", "acme/tools/cli:1.0"} {
		r, _ := opm.ParseTagReference(ref)
		if _, err := e.reg.Remove(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	res := site()
	if res.Removed == 0 {
		t.Errorf("after removals: %+v; want files removed", res)
	}
	for _, gone := range []string{"acme/web/site/tags/v2", "_opm/api/namespaces/acme/projects/web/repositories/site/tags/v2.json", "acme/tools", "_opm/api/namespaces/acme/projects/tools"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s: still there (%v)", gone, err)
		}
	}
	for _, kept := range []string{"CNAME", "acme/web/site/tags/v1/index.html", "acme/web/index.html"} {
		if _, err := os.Stat(filepath.Join(dir, kept)); err != nil {
			t.Error(err)
		}
	}
	if res.Files+2 != len(snapshot(t, dir)) { // CNAME, the list of files
		t.Errorf("%+v, but the directory holds %d files", res, len(snapshot(t, dir)))
	}
}

// checkLinks fails for every href or src of a page of the site under dir
// that leads to no file of it (links with a scheme lead elsewhere), and for
// every JSON file that does not parse.
func checkLinks(t *testing.T, dir string) {
	t.Helper()
	link := regexp.MustCompile(`(?:href|src)="([^"]*)"`)
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch path.Ext(rel) {
		case ".json":
			if !json.Valid(b) {
				t.Errorf("%s: not JSON", rel)
			}
		case ".html":
			for _, m := range link.FindAllStringSubmatch(string(b), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
					continue
				}
				target, _, _ = strings.Cut(target, "#")
				n++
				to := path.Join(path.Dir(rel), target)
				if strings.HasSuffix(target, "/") || target == "." || target == "./" {
					to = path.Join(to, "index.html")
				}
				if strings.HasPrefix(to, "../") {
					t.Errorf("%s: link %q leaves the site", rel, m[1])
					continue
				}
				if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(to))); err != nil || fi.IsDir() {
					t.Errorf("%s: link %q leads to no file (%s)", rel, m[1], to)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("no links checked")
	}
}

// snapshot maps each file under dir to its content and modification time.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = fi.ModTime().String() + "\x00" + string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
