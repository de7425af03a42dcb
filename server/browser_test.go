package server

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/opmtest"
)

// chromium runs the real headless browser on url: the DOM it rendered, and
// a screenshot saved as name.png under bin/testlogs/screenshots.
func chromium(t *testing.T, bin, url, name string) string {
	t.Helper()
	profile := t.TempDir()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile}
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, append(args, "--dump-dom", url)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, errb.Bytes())
	}
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "bin", "testlogs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, name+".png")
	os.Remove(shot)
	cmd = exec.Command(bin, append(args, "--screenshot="+shot, "--window-size=1200,900", "--hide-scrollbars", url)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot %s: %v\n%s", url, err, b)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 5000 {
		t.Errorf("screenshot of %s: %v (%v bytes): a blank page?", url, err, fi)
	}
	return out.String()
}

// TestPagesInABrowser: the web pages as a real browser (headless chromium)
// renders them, with screenshots kept under bin/testlogs/screenshots: a
// namespace's description and labels, each tag's kind (no container image
// called a package), a package page with its referrers (provenance) and
// the pull command opm takes, the search heading, and a styled 404 that
// names the nearest existing name. (These were: no way to describe,
// "package" for everything, no referrers, a wrong pull command, the
// heading "Namespaces" over search results, a plain-text 404.)
func TestPagesInABrowser(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		opmtest.Unavailable(t, "no chromium (scripts/deps.sh installs it)")
	}
	e := newEnv(t, Options{Title: "acme registry"})
	res := e.pushPackage("acme/web/site:v1", map[string]string{"index.html": "<h1>hi</h1>", "css/site.css": "body{}"})
	pushKinds(e, "acme/img/app")
	expect(t, e.do("PUT", "/namespaces/acme", []byte(`{"description":"Everything Acme ships","labels":{"team":"platform"}}`)), 200, "")
	// A provenance statement whose subject is the package.
	body := []byte(`{"_type":"https://in-toto.io/Statement/v1"}`)
	stmt := e.putBlob("acme/web/site", body)
	p, err := e.reg.Resolve(opm.Reference{Repository: opm.Repository{Namespace: "acme", Project: "web", Name: "site"}, Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	prov := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.in-toto+json","config":{"mediaType":%q,"digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.in-toto+json","digest":%q,"size":%d}],"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
		opm.MediaTypeManifest, opm.MediaTypeEmpty, digest.FromString("{}"), stmt, len(body), opm.MediaTypeManifest, res.Digest, len(p.Bytes))
	expect(t, e.do("PUT", "/v2/acme/web/site/manifests/"+digest.FromString(prov).String(), []byte(prov), "Content-Type: "+opm.MediaTypeManifest), 201, "")

	for _, c := range []struct {
		path, name string
		want, not  []string
	}{
		{"/", "home", []string{"Everything Acme ships", "team: platform", "acme registry"}, nil},
		{"/acme/img/app/", "kinds", []string{"container image", "helm chart", "index"}, []string{">package<"}},
		{"/acme/img/app/tags/0.1.0/", "chart", []string{"mychart-0.1.0.tgz", "Chart.json", "helm chart"}, nil},
		{"/acme/web/site/tags/v1/", "package", []string{"opm pull acme/web/site:v1 -o DIR", "Referrers", "provenance", "application/vnd.in-toto+json", "index.html", "opm package"}, nil},
		{"/?q=web", "search", []string{"<h1>Search</h1>", "acme/web"}, []string{"<h1>Namespaces</h1>"}},
		{"/acme/web/sitee/", "404", []string{"404 Not Found", "acme/web/sitee: no such repository; did you mean acme/web/site?", "_opm/style.css", "All namespaces"}, nil},
	} {
		dom := chromium(t, bin, e.url+c.path, c.name)
		for _, w := range c.want {
			if !strings.Contains(dom, w) {
				t.Errorf("%s: the rendered page has no %q", c.path, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(dom, w) {
				t.Errorf("%s: the rendered page has %q", c.path, w)
			}
		}
	}
}
