package server

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/opmtest"
)

// Real OCI clients against the server: oras, crane, regctl and helm, built
// from the Go module proxy in tools/ociclients (its own module, so their
// dependencies stay out of opm's go.mod), and skopeo from Debian.

var (
	clientsOnce sync.Once
	clientsDir  string
	clientsErr  error
	clientsOut  string
)

func ociClients(t *testing.T) (oras, crane string) {
	t.Helper()
	return ociClient(t, "oras"), ociClient(t, "crane")
}

// ociClient is the path of one client that tools/ociclients builds (oras,
// crane, regctl, helm), all built once per test binary.
func ociClient(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the OCI clients: skipped with -short")
	}
	clientsOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		mod := filepath.Join(filepath.Dir(file), "..", "tools", "ociclients")
		clientsDir, clientsErr = os.MkdirTemp("", "opm-ociclients-")
		if clientsErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", clientsDir+"/", "oras.land/oras/cmd/oras", "github.com/google/go-containerregistry/cmd/crane",
			"github.com/regclient/regclient/cmd/regctl", "helm.sh/helm/v4/cmd/helm")
		cmd.Dir = mod
		out, err := cmd.CombinedOutput()
		clientsErr, clientsOut = err, string(out)
	})
	if clientsErr != nil {
		for _, net := range []string{"dial tcp", "proxy.golang.org", "no such host", "i/o timeout", "connection refused", "TLS handshake"} {
			if strings.Contains(clientsOut, net) {
				opmtest.Unavailable(t, "cannot fetch the OCI clients from the Go module proxy (network): %s", clientsOut)
			}
		}
		t.Fatalf("build the OCI clients: %v\n%s", clientsErr, clientsOut)
	}
	return filepath.Join(clientsDir, name)
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

func TestOras(t *testing.T) {
	oras, _ := ociClients(t)
	e := newEnv(t, Options{})
	host := strings.TrimPrefix(e.url, "http://")
	auth := []string{"--plain-http", "-u", "opm", "-p", testToken}
	work := t.TempDir()
	env := []string{"HOME=" + work, "DOCKER_CONFIG=" + filepath.Join(work, ".docker")}
	os.WriteFile(filepath.Join(work, "hello.txt"), []byte("hello from oras\n"), 0o644)
	os.WriteFile(filepath.Join(work, "data.bin"), bytes.Repeat([]byte{7}, 100000), 0o644)

	// oras login: a wrong token fails (it used to "succeed": GET /v2/
	// answered 200 to anyone), the right one passes.
	fails(t, work, env, oras, "login", "--plain-http", "-u", "opm", "-p", "wrong", host)
	run(t, work, env, oras, "login", "--plain-http", "-u", "opm", "-p", testToken, host)

	// oras push → an opm package: the mount and opm pull see its files.
	run(t, work, env, oras, append([]string{"push", host + "/acme/oras/demo:v1", "hello.txt:text/plain", "data.bin"}, auth...)...)
	p, err := e.reg.Resolve(opm.Reference{Repository: opm.Repository{Namespace: "acme", Project: "oras", Name: "demo"}, Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]opm.File{}
	for _, f := range p.Manifest.Files() {
		files[f.Path] = f
	}
	if len(files) != 2 || files["hello.txt"].MediaType != "text/plain" || files["data.bin"].Size != 100000 {
		t.Fatalf("files of the oras push: %+v", files)
	}
	if log, _ := e.reg.Log(context.Background(), "acme/oras/demo:v1", 0); len(log) != 1 {
		t.Fatalf("oras push made %d commits, want 1", len(log))
	}

	// oras pull of a package opm pushed writes the same files.
	e.pushPackage("acme/web/site:v1", map[string]string{"index.html": "<h1>hi</h1>", "css/main.css": "body{}"})
	out := filepath.Join(work, "out")
	run(t, work, env, oras, append([]string{"pull", host + "/acme/web/site:v1", "-o", out}, auth...)...)
	for name, want := range map[string]string{"index.html": "<h1>hi</h1>", "css/main.css": "body{}"} {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(got) != want {
			t.Errorf("oras pull: %s = %q, %v", name, got, err)
		}
	}
	// Tags, manifest fetch, and a wrong password refused.
	if tags := run(t, work, env, oras, append([]string{"repo", "tags", host + "/acme/web/site"}, auth...)...); tags != "v1" {
		t.Errorf("oras repo tags: %q", tags)
	}
	m := run(t, work, env, oras, append([]string{"manifest", "fetch", host + "/acme/web/site:v1"}, auth...)...)
	pp, _ := e.reg.Resolve(opm.Reference{Repository: opm.Repository{Namespace: "acme", Project: "web", Name: "site"}, Tag: "v1"})
	if m != strings.TrimSpace(string(pp.Bytes)) {
		t.Errorf("oras manifest fetch differs from the tag file")
	}
	fails(t, work, env, oras, "push", "--plain-http", "-u", "opm", "-p", "wrong", host+"/acme/oras/demo:v2", "hello.txt")
}

func TestCrane(t *testing.T) {
	_, crane := ociClients(t)
	e := newEnv(t, Options{})
	host := strings.TrimPrefix(e.url, "http://")
	work := t.TempDir()
	env := []string{"HOME=" + work, "DOCKER_CONFIG=" + filepath.Join(work, ".docker")}
	run(t, work, env, crane, "auth", "login", host, "-u", "opm", "-p", testToken)

	// A one-layer image, made and pushed by crane: in.
	writeLayerTar(t, work)
	img := host + "/acme/img/app:v1"
	run(t, work, env, crane, "append", "--insecure", "-f", "layer.tar", "-t", img)
	d1 := run(t, work, env, crane, "digest", "--insecure", img)

	// Copy between repositories (cross-repository mount), and out to a
	// tarball and back in: the digest never changes.
	run(t, work, env, crane, "copy", "--insecure", img, host+"/acme/img/copy:v1")
	if d := run(t, work, env, crane, "digest", "--insecure", host+"/acme/img/copy:v1"); d != d1 {
		t.Fatalf("copy changed the digest: %s vs %s", d, d1)
	}
	run(t, work, env, crane, "pull", "--insecure", img, "img.tar")
	run(t, work, env, crane, "push", "--insecure", "img.tar", host+"/acme/img/back:v1")
	// crane push of a tarball re-serialises the manifest the same way.
	if d := run(t, work, env, crane, "digest", "--insecure", host+"/acme/img/back:v1"); d != d1 {
		t.Errorf("pull and push back changed the digest: %s vs %s", d, d1)
	}
	fs := run(t, work, env, crane, "export", "--insecure", img, "-")
	if !strings.Contains(fs, "echo hello") {
		t.Errorf("crane export: no layer content")
	}

	// An index of two images, byte for byte, by tag.
	run(t, work, env, crane, "index", "append", "--insecure", "-m", img, "-m", host+"/acme/img/copy:v1", "-t", host+"/acme/img/app:multi")
	raw := run(t, work, env, crane, "manifest", "--insecure", host+"/acme/img/app:multi")
	b, err := e.srv.readManifestAt(t, "acme/img/app", "multi")
	if err != nil || strings.TrimSpace(string(b)) != raw || !strings.Contains(raw, opm.MediaTypeIndex) {
		t.Fatalf("index: %v\n%s\n%s", err, raw, b)
	}
	if tags := run(t, work, env, crane, "ls", "--insecure", host+"/acme/img/app"); tags != "multi\nv1" {
		t.Errorf("crane ls: %q", tags)
	}
	// Delete: the tag goes, with one commit.
	run(t, work, env, crane, "delete", "--insecure", host+"/acme/img/app:multi")
	if tags := run(t, work, env, crane, "ls", "--insecure", host+"/acme/img/app"); tags != "v1" {
		t.Errorf("after delete, crane ls: %q", tags)
	}
}

// writeLayerTar writes dir/layer.tar: one layer of an image, bin/hello.
func writeLayerTar(t *testing.T, dir string) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := []byte("#!/bin/sh\necho hello\n")
	tw.WriteHeader(&tar.Header{Name: "bin/hello", Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	if err := os.WriteFile(filepath.Join(dir, "layer.tar"), tb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) readManifestAt(t *testing.T, repo, tag string) ([]byte, error) {
	r, err := opm.ParseRepository(repo)
	if err != nil {
		return nil, err
	}
	v, err := s.reg.View()
	if err != nil {
		return nil, err
	}
	mf, err := v.Manifest(opm.Reference{Repository: r, Tag: tag})
	if err != nil {
		return nil, err
	}
	return mf.Body, nil
}

// TestSkopeo: skopeo (as docker and podman) speaks only the token flow: it
// logs in with GET /v2/, and pushes, copies between two opm servers,
// inspects and deletes with the bearer tokens the server issues. A login
// with a wrong token fails. (skopeo could neither push nor delete, and its
// login "succeeded" with any token, while /v2/ answered 200 to anyone.)
func TestSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		opmtest.Unavailable(t, "no skopeo (scripts/deps.sh installs it): %v", err)
	}
	_, crane := ociClients(t)
	a, b := newEnv(t, Options{}), newEnv(t, Options{})
	hostA, hostB := strings.TrimPrefix(a.url, "http://"), strings.TrimPrefix(b.url, "http://")
	work := t.TempDir()
	env := []string{"HOME=" + work, "DOCKER_CONFIG=" + filepath.Join(work, ".docker"), "REGISTRY_AUTH_FILE=" + filepath.Join(work, "auth.json")}
	policy := filepath.Join(work, "policy.json")
	os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)

	// Logins: a wrong token fails, the right one passes.
	fails(t, work, env, skopeo, "login", "--tls-verify=false", "-u", "opm", "-p", "wrong", hostA)
	run(t, work, env, skopeo, "login", "--tls-verify=false", "-u", "opm", "-p", testToken, hostA)
	run(t, work, env, skopeo, "login", "--tls-verify=false", "-u", "opm", "-p", testToken, hostB)

	// An image on A (crane makes it), copied to B by skopeo: pull from A,
	// push to B, same digest; then inspected and deleted on B.
	writeLayerTar(t, work)
	craneEnv := append(env, "DOCKER_CONFIG="+filepath.Join(work, ".docker"))
	run(t, work, craneEnv, crane, "auth", "login", hostA, "-u", "opm", "-p", testToken)
	run(t, work, craneEnv, crane, "append", "--insecure", "-f", "layer.tar", "-t", hostA+"/acme/img/app:v1")
	want := run(t, work, craneEnv, crane, "digest", "--insecure", hostA+"/acme/img/app:v1")

	sk := []string{"--policy", policy}
	run(t, work, env, skopeo, append(sk, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
		"docker://"+hostA+"/acme/img/app:v1", "docker://"+hostB+"/acme/mirror/app:v1")...)
	var info struct{ Digest string }
	if err := json.Unmarshal([]byte(run(t, work, env, skopeo, "inspect", "--tls-verify=false", "docker://"+hostB+"/acme/mirror/app:v1")), &info); err != nil || info.Digest != want {
		t.Fatalf("skopeo inspect on B: %v %q, want %s", err, info.Digest, want)
	}
	if _, err := b.srv.readManifestAt(t, "acme/mirror/app", "v1"); err != nil {
		t.Fatalf("B after skopeo copy: %v", err)
	}
	run(t, work, env, skopeo, "delete", "--tls-verify=false", "docker://"+hostB+"/acme/mirror/app:v1")
	if _, err := b.srv.readManifestAt(t, "acme/mirror/app", "v1"); err == nil {
		t.Fatal("the tag is still on B after skopeo delete")
	}

	// Anonymous reads: no login, reads open, the token flow without
	// credentials.
	run(t, work, env, skopeo, "logout", "--all")
	run(t, work, env, skopeo, "inspect", "--tls-verify=false", "--no-creds", "docker://"+hostA+"/acme/img/app:v1")
}

// fails runs a client that must fail, with its output for the message.
func fails(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("%s %s succeeded: %s", filepath.Base(name), strings.Join(args, " "), out)
	}
}

// TestRegctl: regctl logs in (a wrong token fails), puts an artifact and a
// referrer to it, lists the referrers, reads the artifact back, lists and
// deletes tags.
func TestRegctl(t *testing.T) {
	regctl := ociClient(t, "regctl")
	e := newEnv(t, Options{})
	host := strings.TrimPrefix(e.url, "http://")
	work := t.TempDir()
	env := []string{"HOME=" + work}
	run(t, work, env, regctl, "registry", "set", "--tls", "disabled", host)
	fails(t, work, env, regctl, "registry", "login", host, "-u", "opm", "-p", "wrong")
	run(t, work, env, regctl, "registry", "login", host, "-u", "opm", "-p", testToken)

	os.WriteFile(filepath.Join(work, "notes.txt"), []byte("release notes\n"), 0o644)
	os.WriteFile(filepath.Join(work, "sbom.json"), []byte(`{"spdxVersion":"SPDX-2.3"}`), 0o644)
	ref := host + "/acme/reg/art:v1"
	run(t, work, env, regctl, "artifact", "put", "--artifact-type", "application/vnd.example.notes", "--file", "notes.txt", "--file-media-type", "text/plain", ref)
	run(t, work, env, regctl, "artifact", "put", "--artifact-type", "application/spdx+json", "--file", "sbom.json", "--file-media-type", "application/spdx+json", "--subject", ref)
	if got := run(t, work, env, regctl, "artifact", "get", ref); got != "release notes" {
		t.Errorf("regctl artifact get: %q", got)
	}
	if list := run(t, work, env, regctl, "artifact", "list", ref, "--format", "{{range .Descriptors}}{{.ArtifactType}}{{end}}"); list != "application/spdx+json" {
		t.Errorf("regctl artifact list: %q, want the SBOM referrer", list)
	}
	run(t, work, env, regctl, "image", "copy", ref, host+"/acme/reg/art:v2")
	if tags := run(t, work, env, regctl, "tag", "ls", host+"/acme/reg/art"); tags != "v1\nv2" {
		t.Errorf("regctl tag ls: %q", tags)
	}
	run(t, work, env, regctl, "tag", "delete", host+"/acme/reg/art:v2")
	if tags := run(t, work, env, regctl, "tag", "ls", host+"/acme/reg/art"); tags != "v1" {
		t.Errorf("regctl tag ls after delete: %q", tags)
	}
	// The artifact reads as files in opm: its one titled layer.
	p, err := e.reg.Resolve(opm.Reference{Repository: opm.Repository{Namespace: "acme", Project: "reg", Name: "art"}, Tag: "v1"})
	if err != nil || len(p.Manifest.Files()) == 0 {
		t.Fatalf("the artifact in opm: %v", err)
	}
}

// TestHelm: helm logs in (a wrong token fails), pushes a chart it
// packaged, pulls it back byte for byte; in opm the chart is a Helm chart
// whose archive is a file named from the chart.
func TestHelm(t *testing.T) {
	helm := ociClient(t, "helm")
	e := newEnv(t, Options{})
	host := strings.TrimPrefix(e.url, "http://")
	work := t.TempDir()
	env := []string{"HOME=" + work, "HELM_CONFIG_HOME=" + filepath.Join(work, "config"), "HELM_CACHE_HOME=" + filepath.Join(work, "cache"), "HELM_DATA_HOME=" + filepath.Join(work, "data")}
	fails(t, work, env, helm, "registry", "login", host, "--plain-http", "-u", "opm", "-p", "wrong")
	run(t, work, env, helm, "registry", "login", host, "--plain-http", "-u", "opm", "-p", testToken)

	chart := filepath.Join(work, "mychart")
	os.MkdirAll(filepath.Join(chart, "templates"), 0o755)
	os.WriteFile(filepath.Join(chart, "Chart.yaml"), []byte("apiVersion: v2\nname: mychart\nversion: 0.1.0\ndescription: a test chart\n"), 0o644)
	os.WriteFile(filepath.Join(chart, "values.yaml"), []byte("replicas: 2\n"), 0o644)
	os.WriteFile(filepath.Join(chart, "templates", "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  replicas: \"{{ .Values.replicas }}\"\n"), 0o644)
	run(t, work, env, helm, "package", chart, "-d", work)
	tgz := filepath.Join(work, "mychart-0.1.0.tgz")
	run(t, work, env, helm, "push", tgz, "oci://"+host+"/acme/charts", "--plain-http")

	out := filepath.Join(work, "pulled")
	os.Mkdir(out, 0o755)
	run(t, work, env, helm, "pull", "oci://"+host+"/acme/charts/mychart", "--version", "0.1.0", "--plain-http", "-d", out)
	want, _ := os.ReadFile(tgz)
	if got, err := os.ReadFile(filepath.Join(out, "mychart-0.1.0.tgz")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("helm pull: %v (%d bytes, want %d)", err, len(got), len(want))
	}
	p, err := e.reg.Resolve(opm.Reference{Repository: opm.Repository{Namespace: "acme", Project: "charts", Name: "mychart"}, Tag: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range p.Manifest.Files() {
		names = append(names, f.Path)
	}
	if !slices.Contains(names, "mychart-0.1.0.tgz") || !slices.Contains(names, "Chart.json") {
		t.Errorf("the chart in opm: files %v", names)
	}
	// The chart's values and Chart.yaml, from inside the archive helm made
	// (opm inspect --values prints the same).
	if c, err := e.reg.Chart(context.Background(), p.Ref, p.Bytes); err != nil || c.ValuesYAML != "replicas: 2\n" {
		t.Errorf("the chart's values: %+v, %v", c, err)
	}
	page := string(expect(t, e.do("GET", "/acme/charts/mychart/tags/0.1.0/", nil), 200, ""))
	if !strings.Contains(page, "replicas: 2") || !strings.Contains(page, "name: mychart") {
		t.Errorf("the chart's page does not show its values.yaml and Chart.yaml")
	}
}
