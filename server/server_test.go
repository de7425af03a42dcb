package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

const testToken = "s3cret-token"

type env struct {
	t   *testing.T
	reg *registry.Registry
	srv *Server
	url string
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	return startEnv(t, opts, func(h http.Handler) (string, func()) {
		hs := httptest.NewServer(h)
		return hs.URL, hs.Close
	})
}

// startEnv is newEnv with the server started by serve, which returns its
// URL and how to stop it.
func startEnv(t *testing.T, opts Options, serve func(http.Handler) (url string, stop func())) *env {
	t.Helper()
	t.Setenv("GIT_AUTHOR_NAME", "Test Pusher")
	t.Setenv("GIT_AUTHOR_EMAIL", "pusher@example.com")
	reg, err := registry.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if opts.Token == "" {
		opts.Token = testToken
	}
	srv, err := New(reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	url, stop := serve(srv)
	t.Cleanup(func() {
		stop()
		srv.Close()
		reg.Close()
	})
	return &env{t: t, reg: reg, srv: srv, url: url}
}

// do sends a request with the write token; hdr is "Key: value" pairs.
func (e *env) do(method, path string, body []byte, hdr ...string) *http.Response {
	e.t.Helper()
	return e.doAuth("Bearer "+testToken, method, path, body, hdr...)
}

func (e *env) doAuth(auth, method, path string, body []byte, hdr ...string) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func readAll(t *testing.T, res *http.Response) []byte {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expect checks the status, and for an error the OCI error body's code.
func expect(t *testing.T, res *http.Response, status int, code string) []byte {
	t.Helper()
	b := readAll(t, res)
	if res.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", res.Request.Method, res.Request.URL.Path, res.StatusCode, status, b)
	}
	if code != "" {
		var body struct{ Errors []ociError }
		if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) == 0 {
			t.Fatalf("%s %s: want an OCI error body, got %q", res.Request.Method, res.Request.URL.Path, b)
		}
		if body.Errors[0].Code != code {
			t.Fatalf("%s %s: code %s, want %s (%s)", res.Request.Method, res.Request.URL.Path, body.Errors[0].Code, code, body.Errors[0].Message)
		}
	}
	return b
}

// pushPackage pushes files (name -> content) with the registry itself.
func (e *env) pushPackage(ref string, files map[string]string) *registry.PushResult {
	e.t.Helper()
	dir := opmtest.WriteTree(e.t, files)
	r, err := opm.ParseTagReference(ref)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.reg.Push(context.Background(), r, []string{dir}, registry.PushOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) head() string {
	h, err := e.reg.Head()
	if err != nil {
		e.t.Fatal(err)
	}
	return h.String()
}

func (e *env) commits() int {
	log, err := e.reg.Log(context.Background(), "", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(log)
}

// putBlob uploads a blob monolithically.
func (e *env) putBlob(repo string, b []byte) digest.Digest {
	e.t.Helper()
	d := digest.FromBytes(b)
	expect(e.t, e.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), b), 201, "")
	return d
}

func TestPullPackage(t *testing.T) {
	e := newEnv(t, Options{})
	content := strings.Repeat("0123456789", 1000)
	res := e.pushPackage("acme/web/site:v1", map[string]string{"index.html": content, "css/a.css": "body{}"})
	p, err := e.reg.Resolve(opm.Reference{Repository: opm.Repository{Namespace: "acme", Project: "web", Name: "site"}, Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"v1", res.Digest.String()} {
		r := e.do("GET", "/v2/acme/web/site/manifests/"+ref, nil)
		b := expect(t, r, 200, "")
		if !bytes.Equal(b, p.Bytes) {
			t.Fatalf("manifest by %s differs from the tag file", ref)
		}
		if ct := r.Header.Get("Content-Type"); ct != opm.MediaTypeManifest {
			t.Errorf("Content-Type %q", ct)
		}
		if dg := r.Header.Get("Docker-Content-Digest"); dg != res.Digest.String() {
			t.Errorf("Docker-Content-Digest %q, want %s", dg, res.Digest)
		}
		h := e.do("HEAD", "/v2/acme/web/site/manifests/"+ref, nil)
		expect(t, h, 200, "")
		if h.ContentLength != int64(len(p.Bytes)) {
			t.Errorf("HEAD Content-Length %d", h.ContentLength)
		}
	}
	var d digest.Digest
	for _, f := range p.Manifest.Files() {
		if f.Path == "index.html" {
			d = f.Digest
		}
	}
	b := expect(t, e.do("GET", "/v2/acme/web/site/blobs/"+d.String(), nil), 200, "")
	if string(b) != content {
		t.Fatal("blob content differs")
	}
	r := e.do("GET", "/v2/acme/web/site/blobs/"+d.String(), nil, "Range: bytes=10-19")
	if b := expect(t, r, 206, ""); string(b) != "0123456789" {
		t.Fatalf("range read %q", b)
	}
	if cr := r.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 10-19/%d", len(content)) {
		t.Errorf("Content-Range %q", cr)
	}
	h := e.do("HEAD", "/v2/acme/web/site/blobs/"+d.String(), nil)
	expect(t, h, 200, "")
	if h.ContentLength != int64(len(content)) || h.Header.Get("Docker-Content-Digest") != d.String() {
		t.Errorf("HEAD blob: length %d digest %q", h.ContentLength, h.Header.Get("Docker-Content-Digest"))
	}
	missing := digest.FromString("missing")
	expect(t, e.do("GET", "/v2/acme/web/site/blobs/"+missing.String(), nil), 404, "BLOB_UNKNOWN")
	expect(t, e.do("GET", "/v2/acme/web/site/manifests/nope", nil), 404, "MANIFEST_UNKNOWN")
	expect(t, e.do("GET", "/v2/acme/web/site/manifests/"+missing.String(), nil), 404, "MANIFEST_UNKNOWN")
	expect(t, e.do("GET", "/v2/", nil), 200, "")
}

func TestUploads(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/up/load"
	// Monolithic.
	blob := []byte("monolithic blob")
	d := e.putBlob(repo, blob)
	if b := expect(t, e.do("GET", "/v2/"+repo+"/blobs/"+d.String(), nil), 200, ""); !bytes.Equal(b, blob) {
		t.Fatal("monolithic blob differs")
	}
	// Monolithic with a wrong digest stores nothing.
	wrong := digest.FromString("other")
	expect(t, e.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+wrong.String(), []byte("x")), 400, "DIGEST_INVALID")
	expect(t, e.do("HEAD", "/v2/"+repo+"/blobs/"+wrong.String(), nil), 404, "")

	// Chunked, with an out-of-order chunk refused.
	big := bytes.Repeat([]byte("chunk!"), 5000)
	bd := digest.FromBytes(big)
	r := e.do("POST", "/v2/"+repo+"/blobs/uploads/", nil)
	expect(t, r, 202, "")
	loc := r.Header.Get("Location")
	half := len(big) / 2
	expect(t, e.do("PATCH", loc, big[half:], fmt.Sprintf("Content-Range: %d-%d", half, len(big)-1)), 416, "BLOB_UPLOAD_INVALID")
	r = e.do("PATCH", loc, big[:half], fmt.Sprintf("Content-Range: 0-%d", half-1))
	expect(t, r, 202, "")
	if rg := r.Header.Get("Range"); rg != fmt.Sprintf("0-%d", half-1) {
		t.Errorf("Range %q", rg)
	}
	r = e.do("GET", loc, nil)
	expect(t, r, 204, "")
	expect(t, e.do("PATCH", loc, big[half:]), 202, "") // streamed: no Content-Range
	r = e.do("PUT", loc+"?digest="+bd.String(), nil)
	expect(t, r, 201, "")
	if r.Header.Get("Location") != "/v2/"+repo+"/blobs/"+bd.String() {
		t.Errorf("Location %q", r.Header.Get("Location"))
	}
	if b := expect(t, e.do("GET", "/v2/"+repo+"/blobs/"+bd.String(), nil), 200, ""); !bytes.Equal(b, big) {
		t.Fatal("chunked blob differs")
	}
	expect(t, e.do("GET", loc, nil), 404, "BLOB_UPLOAD_UNKNOWN") // finished

	// A session finished with the wrong digest stores nothing.
	r = e.do("POST", "/v2/"+repo+"/blobs/uploads/", nil)
	loc = r.Header.Get("Location")
	readAll(t, r)
	expect(t, e.do("PUT", loc+"?digest="+wrong.String(), []byte("abc")), 400, "DIGEST_INVALID")
	expect(t, e.do("HEAD", "/v2/"+repo+"/blobs/"+wrong.String(), nil), 404, "")

	// Cancel.
	r = e.do("POST", "/v2/"+repo+"/blobs/uploads/", nil)
	loc = r.Header.Get("Location")
	readAll(t, r)
	expect(t, e.do("DELETE", loc, nil), 204, "")
	expect(t, e.do("PATCH", loc, []byte("x")), 404, "BLOB_UPLOAD_UNKNOWN")

	// Mount: a stored blob is there at once; an unknown one opens a session.
	r = e.do("POST", "/v2/other/repo/here/blobs/uploads/?mount="+d.String()+"&from="+repo, nil)
	expect(t, r, 201, "")
	if r.Header.Get("Location") != "/v2/other/repo/here/blobs/"+d.String() {
		t.Errorf("mount Location %q", r.Header.Get("Location"))
	}
	expect(t, e.do("POST", "/v2/other/repo/here/blobs/uploads/?mount="+wrong.String()+"&from="+repo, nil), 202, "")
}

// An OCI image (not an opm package) and an index pushed by another client
// are kept byte for byte, each PUT one commit.
func TestManifestRoundTrip(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/img/app"
	cfg := e.putBlob(repo, []byte(`{"architecture":"amd64","os":"linux"}`))
	layer := e.putBlob(repo, []byte("layer bytes"))
	// Odd spacing and key order: must come back exactly.
	m := []byte(fmt.Sprintf(`{ "schemaVersion": 2,  "layers": [{"size": 11, "digest": "%s", "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}],
	"mediaType": "application/vnd.oci.image.manifest.v1+json",
	"config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "%s", "size": 37}, "annotations": {"z": "1", "a": "2"} }`, layer, cfg))
	md := digest.FromBytes(m)
	before := e.commits()
	r := e.do("PUT", "/v2/"+repo+"/manifests/v1", m, "Content-Type: "+opm.MediaTypeManifest)
	expect(t, r, 201, "")
	if r.Header.Get("Docker-Content-Digest") != md.String() {
		t.Errorf("digest %q want %s", r.Header.Get("Docker-Content-Digest"), md)
	}
	if n := e.commits(); n != before+1 {
		t.Fatalf("%d commits after one PUT, want %d", n, before+1)
	}
	// By digest twice: found among the tags, then in the cache.
	for _, ref := range []string{"v1", md.String(), md.String()} {
		if b := expect(t, e.do("GET", "/v2/"+repo+"/manifests/"+ref, nil), 200, ""); !bytes.Equal(b, m) {
			t.Fatalf("GET %s: bytes differ:\n%s", ref, b)
		}
	}
	// The same PUT again makes no commit.
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", m, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	if n := e.commits(); n != before+1 {
		t.Fatalf("a repeated PUT committed")
	}
	log, err := e.reg.Log(context.Background(), repo+":v1", 0)
	if err != nil || len(log) != 1 || log[0].Digest != md || log[0].Author != "Test Pusher" {
		t.Fatalf("log %+v %v", log, err)
	}

	// A docker manifest by digest only, then an index naming both.
	dm := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":37,"digest":"%s"},"layers":[]}`, cfg))
	dmd := digest.FromBytes(dm)
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/"+dmd.String(), dm, "Content-Type: "+opm.MediaTypeDockerManifest), 201, "")
	r = e.do("GET", "/v2/"+repo+"/manifests/"+dmd.String(), nil)
	if b := expect(t, r, 200, ""); !bytes.Equal(b, dm) || r.Header.Get("Content-Type") != opm.MediaTypeDockerManifest {
		t.Fatalf("docker manifest by digest: %q %s", r.Header.Get("Content-Type"), b)
	}
	idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"%s","digest":"%s","size":%d},{"mediaType":"%s","digest":"%s","size":%d}]}`,
		opm.MediaTypeManifest, md, len(m), opm.MediaTypeDockerManifest, dmd, len(dm)))
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/multi", idx, "Content-Type: "+opm.MediaTypeIndex), 201, "")
	r = e.do("GET", "/v2/"+repo+"/manifests/multi", nil)
	if b := expect(t, r, 200, ""); !bytes.Equal(b, idx) || r.Header.Get("Content-Type") != opm.MediaTypeIndex {
		t.Fatal("index differs")
	}
	// An index naming a manifest that is not there is refused.
	bad := bytes.Replace(idx, []byte(dmd.Encoded()), []byte(digest.FromString("x").Encoded()), 1)
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/bad", bad, "Content-Type: "+opm.MediaTypeIndex), 400, "MANIFEST_BLOB_UNKNOWN")
	// A manifest naming a missing blob is refused, nothing committed.
	head := e.head()
	missing := bytes.Replace(m, []byte(layer.Encoded()), []byte(digest.FromString("nope").Encoded()), 1)
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v2", missing, "Content-Type: "+opm.MediaTypeManifest), 400, "MANIFEST_BLOB_UNKNOWN")
	// The digest in the URL must match.
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/"+digest.FromString("y").String(), m, "Content-Type: "+opm.MediaTypeManifest), 400, "DIGEST_INVALID")
	if e.head() != head {
		t.Fatal("a refused PUT moved the head")
	}

	// Tags list, referrers, deletes.
	b := expect(t, e.do("GET", "/v2/"+repo+"/tags/list", nil), 200, "")
	if string(b) != "{\n  \"name\": \"acme/img/app\",\n  \"tags\": [\n    \"multi\",\n    \"v1\"\n  ]\n}\n" {
		t.Fatalf("tags list %s", b)
	}
	// A blob a manifest names cannot be deleted.
	expect(t, e.do("DELETE", "/v2/"+repo+"/blobs/"+layer.String(), nil), 405, "DENIED")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/multi", nil), 202, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 202, "")
	expect(t, e.do("GET", "/v2/"+repo+"/manifests/v1", nil), 404, "MANIFEST_UNKNOWN")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 404, "MANIFEST_UNKNOWN")
	expect(t, e.do("DELETE", "/v2/"+repo+"/blobs/"+layer.String(), nil), 202, "")
	expect(t, e.do("GET", "/v2/"+repo+"/blobs/"+layer.String(), nil), 404, "BLOB_UNKNOWN")
}

func TestReferrers(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/sig/app"
	cfg := e.putBlob(repo, []byte("{}"))
	subject := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","digest":"%s","size":2},"layers":[]}`, opm.MediaTypeManifest, opm.MediaTypeEmpty, cfg))
	sd := digest.FromBytes(subject)
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", subject, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	sig := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","artifactType":"application/x-sig","config":{"mediaType":"%s","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"%s","digest":"%s","size":%d}}`,
		opm.MediaTypeManifest, opm.MediaTypeEmpty, cfg, opm.MediaTypeManifest, sd, len(subject)))
	r := e.do("PUT", "/v2/"+repo+"/manifests/"+digest.FromBytes(sig).String(), sig, "Content-Type: "+opm.MediaTypeManifest)
	expect(t, r, 201, "")
	if r.Header.Get("OCI-Subject") != sd.String() {
		t.Errorf("OCI-Subject %q", r.Header.Get("OCI-Subject"))
	}
	var idx struct{ Manifests []opm.Descriptor }
	for _, c := range []struct {
		q string
		n int
	}{{"", 1}, {"?artifactType=application/x-sig", 1}, {"?artifactType=other", 0}} {
		r = e.do("GET", "/v2/"+repo+"/referrers/"+sd.String()+c.q, nil)
		json.Unmarshal(expect(t, r, 200, ""), &idx)
		if len(idx.Manifests) != c.n || r.Header.Get("Content-Type") != opm.MediaTypeIndex {
			t.Fatalf("referrers%s: %d manifests, want %d", c.q, len(idx.Manifests), c.n)
		}
	}
}

func TestTagsPagination(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		e.pushPackage("acme/pg/repo:"+tag, map[string]string{"f": tag})
	}
	var got []string
	path := "/v2/acme/pg/repo/tags/list?n=2"
	for path != "" {
		r := e.do("GET", path, nil)
		var l struct{ Tags []string }
		json.Unmarshal(expect(t, r, 200, ""), &l)
		got = append(got, l.Tags...)
		path = ""
		if link := r.Header.Get("Link"); link != "" {
			path = strings.TrimSuffix(strings.TrimPrefix(strings.Split(link, ";")[0], "<"), ">")
		}
	}
	if strings.Join(got, ",") != "a,b,c,d,e" {
		t.Fatalf("paged tags %v", got)
	}
	r := e.do("GET", "/v2/acme/pg/repo/tags/list?last=c", nil)
	if b := expect(t, r, 200, ""); !strings.Contains(string(b), `"d"`) || strings.Contains(string(b), `"c"`) {
		t.Fatalf("last=c: %s", b)
	}
	// The listing API pages the same way.
	r = e.do("GET", "/namespaces/acme/projects/pg/repositories/repo/tags?n=3", nil)
	var l Listing
	json.Unmarshal(expect(t, r, 200, ""), &l)
	if len(l.Tags) != 3 || !strings.Contains(r.Header.Get("Link"), "last=c") {
		t.Fatalf("listing page: %d tags, Link %q", len(l.Tags), r.Header.Get("Link"))
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, Options{})
	head := e.head()
	blob := []byte("unauthorised")
	d := digest.FromBytes(blob)
	for _, auth := range []string{"", "Bearer wrong", "Basic " + "bm9wZTpub3Bl"} {
		r := e.doAuth(auth, "POST", "/v2/a/b/c/blobs/uploads/?digest="+d.String(), blob)
		expect(t, r, 401, "UNAUTHORIZED")
		if r.Header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
		expect(t, e.doAuth(auth, "PUT", "/v2/a/b/c/manifests/v1", []byte(`{}`)), 401, "UNAUTHORIZED")
		expect(t, e.doAuth(auth, "DELETE", "/v2/a/b/c/manifests/v1", nil), 401, "UNAUTHORIZED")
	}
	if e.head() != head || e.reg.HasLocal(d) {
		t.Fatal("an unauthorised write changed something")
	}
	// Reads are open, but GET /v2/, the check clients log in with, wants
	// credentials (and right ones); Basic with the token as password writes.
	expect(t, e.doAuth("", "GET", "/v2/", nil), 401, "UNAUTHORIZED")
	expect(t, e.doAuth("Basic "+base64Encode("anyone:wrong"), "GET", "/v2/", nil), 401, "UNAUTHORIZED")
	expect(t, e.doAuth("Basic "+base64Encode("anyone:"+testToken), "GET", "/v2/", nil), 200, "")
	expect(t, e.doAuth("", "GET", "/v2/_catalog", nil), 200, "")
	expect(t, e.doAuth("", "GET", "/namespaces", nil), 200, "")
	basic := "Basic " + base64Encode("anyone:"+testToken)
	expect(t, e.doAuth(basic, "POST", "/v2/a/b/c/blobs/uploads/?digest="+d.String(), blob), 201, "")

	// A read token closes reads.
	e2 := newEnv(t, Options{ReadToken: "reader"})
	for _, p := range []string{"/v2/", "/namespaces", "/", "/v2/a/b/c/tags/list"} {
		expect(t, e2.doAuth("", "GET", p, nil), 401, "UNAUTHORIZED")
		expect(t, e2.doAuth("Bearer reader", "GET", p, nil), 200, "")
	}
	expect(t, e2.doAuth("Bearer reader", "DELETE", "/v2/a/b/c/manifests/v1", nil), 401, "UNAUTHORIZED")

	// Without a write token the server is read-only.
	reg, _ := registry.Open(context.Background(), t.TempDir())
	defer reg.Close()
	ro, _ := New(reg, Options{})
	defer ro.Close()
	w := httptest.NewRecorder()
	ro.ServeHTTP(w, httptest.NewRequest("PUT", "/v2/a/b/c/manifests/v1", strings.NewReader("{}")))
	if w.Code != 401 {
		t.Fatalf("read-only server: PUT got %d", w.Code)
	}
}

// Malformed input is a 4xx with an OCI error body, never a 5xx or a panic.
func TestMalformed(t *testing.T) {
	e := newEnv(t, Options{})
	e.pushPackage("acme/web/site:v1", map[string]string{"a": "a"})
	huge := bytes.Repeat([]byte(" "), opm.MaxManifestSize+1)
	cases := []struct {
		method, path string
		body         []byte
		hdr          []string
		status       int
		code         string
	}{
		{"GET", "/v2/UPPER/b/c/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"GET", "/v2/a/b/tags/list", nil, nil, 404, "NAME_UNKNOWN"},
		{"GET", "/v2/a/b/c/d/tags/list", nil, nil, 404, "NAME_UNKNOWN"},
		{"GET", "/v2/a/../c/tags/list", nil, nil, 404, ""},
		{"GET", "/v2/a/b/c/nothing", nil, nil, 404, "NAME_UNKNOWN"},
		{"GET", "/v2/acme/web/site/manifests/sha256:totallywrong", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/acme/web/site/manifests/-bad-tag", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/acme/web/site/blobs/sha256:zz", nil, nil, 404, "BLOB_UNKNOWN"},
		{"GET", "/v2/acme/web/site/blobs/md5:abc", nil, nil, 404, "BLOB_UNKNOWN"},
		{"PUT", "/v2/acme/web/site/manifests/v2", []byte("blablabla"), []string{"Content-Type: " + opm.MediaTypeManifest}, 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/acme/web/site/manifests/v2", []byte(`{"schemaVersion":2,"config":{"digest":"sha256:abc","size":1},"layers":[]}`), nil, 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/acme/web/site/manifests/v2", []byte(`{"schemaVersion":2,"mediaType":"text/plain"}`), nil, 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/acme/web/site/manifests/v2", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`), []string{"Content-Type: " + opm.MediaTypeManifest}, 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/acme/web/site/manifests/v2", huge, nil, 413, "SIZE_INVALID"},
		{"PUT", "/v2/acme/web/site/manifests/.bad", []byte(`{}`), nil, 400, "TAG_INVALID"},
		{"PUT", "/v2/acme/web/site/manifests/sha256:zz", []byte(`{}`), nil, 400, "DIGEST_INVALID"},
		{"DELETE", "/v2/acme/web/site/manifests/nope", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"POST", "/v2/acme/web/site/blobs/uploads/?digest=sha256:zz", []byte("x"), nil, 400, "DIGEST_INVALID"},
		{"PATCH", "/v2/acme/web/site/blobs/uploads/nope", []byte("x"), nil, 404, "BLOB_UPLOAD_UNKNOWN"},
		{"PUT", "/v2/acme/web/site/blobs/uploads/nope?digest=sha256:zz", nil, nil, 400, "DIGEST_INVALID"},
		{"DELETE", "/v2/acme/web/site/blobs/sha256:zz", nil, nil, 400, "DIGEST_INVALID"},
		{"GET", "/v2/acme/web/site/tags/list?n=-1", nil, nil, 400, "PAGINATION_NUMBER_INVALID"},
		{"GET", "/v2/acme/web/site/tags/list?n=x", nil, nil, 400, "PAGINATION_NUMBER_INVALID"},
		{"GET", "/v2/acme/web/site/referrers/sha256:zz", nil, nil, 400, "DIGEST_INVALID"},
		{"POST", "/v2/acme/web/site/manifests/v1", nil, nil, 405, "UNSUPPORTED"},
		{"GET", "/namespaces/BAD/projects", nil, nil, 400, "NAME_INVALID"},
		{"GET", "/namespaces/acme/things", nil, nil, 404, "NAME_UNKNOWN"},
		{"GET", "/namespaces/nope/projects", nil, nil, 404, "NAME_UNKNOWN"},
		{"GET", "/namespaces/acme/projects/web/repositories/site/tags/nope", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"GET", "/no/such/page/at/all/here", nil, nil, 404, ""},
		{"POST", "/", nil, nil, 405, ""},
	}
	for _, c := range cases {
		expect(t, e.do(c.method, c.path, c.body, c.hdr...), c.status, c.code)
	}
	// A chunk with a malformed Content-Range.
	r := e.do("POST", "/v2/acme/web/site/blobs/uploads/", nil)
	loc := r.Header.Get("Location")
	readAll(t, r)
	expect(t, e.do("PATCH", loc, []byte("abc"), "Content-Range: 5-1"), 400, "BLOB_UPLOAD_INVALID")
	expect(t, e.do("PATCH", loc, []byte("abc"), "Content-Range: 0-9"), 400, "BLOB_UPLOAD_INVALID")
	// A chunked body (no Content-Length) longer or shorter than its
	// Content-Range is refused, and the session with it.
	for _, cr := range []string{"0-1", "0-9"} {
		r = e.do("POST", "/v2/acme/web/site/blobs/uploads/", nil)
		loc = r.Header.Get("Location")
		readAll(t, r)
		req, err := http.NewRequest("PATCH", e.url+loc, io.MultiReader(strings.NewReader("abc")))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Range", cr)
		r, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, r, 400, "BLOB_UPLOAD_INVALID")
		expect(t, e.do("GET", loc, nil), 404, "BLOB_UPLOAD_UNKNOWN")
	}
}

func TestListingAPI(t *testing.T) {
	e := newEnv(t, Options{})
	res := e.pushPackage("acme/web/site:v1", map[string]string{"index.html": "hello", "img/logo.png": "png"})
	e.pushPackage("acme/web/site:v2", map[string]string{"index.html": "hello again"})
	e.pushPackage("acme/tools/cli:1.0", map[string]string{"cli": "#!"})
	e.pushPackage("zeta/p/r:t", map[string]string{"x": "x"})
	meta, err := gitmeta.Open(filepath.Join(e.reg.Home(), "meta.git")) // another writer of the metadata
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	_, _, err = meta.Update(context.Background(), e.reg.Author(context.Background()), func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{
			{Path: "acme/namespace.json", Data: []byte(`{"description":"Acme Corp","labels":{"team":"platform"}}`)},
			{Path: "acme/web/site/repository.json", Data: []byte(`{"description":"the web site","labels":{"type":"static"}}`)},
		}, gitmeta.Message{Subject: "describe acme"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var l Listing
	json.Unmarshal(expect(t, e.do("GET", "/namespaces", nil), 200, ""), &l)
	if len(l.Items) != 2 || l.Items[0].Name != "acme" || l.Items[0].Description != "Acme Corp" || l.Items[0].Labels["team"] != "platform" || l.Items[0].Children != 2 {
		t.Fatalf("namespaces: %+v", l.Items)
	}
	r := e.do("GET", "/namespaces?n=1", nil)
	json.Unmarshal(expect(t, r, 200, ""), &l)
	if len(l.Items) != 1 || !strings.Contains(r.Header.Get("Link"), "last=acme") {
		t.Fatalf("namespaces n=1: %+v, Link %q", l.Items, r.Header.Get("Link"))
	}
	json.Unmarshal(expect(t, e.do("GET", "/namespaces/acme/projects", nil), 200, ""), &l)
	if l.Node == nil || l.Node.Name != "acme" || len(l.Items) != 2 || l.Items[0].Name != "tools" {
		t.Fatalf("projects: %+v", l)
	}
	json.Unmarshal(expect(t, e.do("GET", "/namespaces/acme/projects/web/repositories", nil), 200, ""), &l)
	// v1: index.html "hello" (5) + img/logo.png "png" (3) + the empty config (2);
	// v2: "hello again" (11); the config is shared.
	if len(l.Items) != 1 || l.Items[0].Labels["type"] != "static" || l.Items[0].Children != 2 || l.Items[0].Size != 21 {
		t.Fatalf("repositories: %+v", l.Items)
	}
	json.Unmarshal(expect(t, e.do("GET", "/namespaces/acme/projects/web/repositories/site/tags", nil), 200, ""), &l)
	if len(l.Tags) != 2 || l.Tags[0].Name != "v1" || l.Tags[0].Files != 2 || l.Tags[0].Size != 8 || l.Tags[0].Date.IsZero() {
		t.Fatalf("tags: %+v", l.Tags)
	}
	var cat struct{ Repositories []string }
	r = e.do("GET", "/v2/_catalog?n=2", nil)
	json.Unmarshal(expect(t, r, 200, ""), &cat)
	if strings.Join(cat.Repositories, " ") != "acme/tools/cli acme/web/site" || !strings.Contains(r.Header.Get("Link"), "last=acme%2Fweb%2Fsite") {
		t.Fatalf("catalog: %v, Link %q", cat.Repositories, r.Header.Get("Link"))
	}
	var td TagDetail
	json.Unmarshal(expect(t, e.do("GET", "/namespaces/acme/projects/web/repositories/site/tags/v1", nil), 200, ""), &td)
	if td.Descriptor.Digest != res.Digest || td.Descriptor.MediaType != opm.MediaTypeManifest || len(td.Files) != 2 || len(td.History) != 1 || td.History[0].Author != "Test Pusher" {
		t.Fatalf("tag: %+v", td)
	}
	// The tag's date and commit are those the tags listing gives.
	if !td.Date.Equal(l.Tags[0].Date) || td.Commit == "" || td.Commit != l.Tags[0].Commit {
		t.Fatalf("tag v1 set at %v by %s, the listing says %v by %s", td.Date, td.Commit, l.Tags[0].Date, l.Tags[0].Commit)
	}
	// DELETE of a tag is one commit "rm <ref>" naming what the tag held.
	expect(t, e.do("DELETE", "/v2/acme/web/site/manifests/v1", nil), 202, "")
	expect(t, e.do("GET", "/v2/acme/web/site/manifests/v1", nil), 404, "MANIFEST_UNKNOWN")
	expect(t, e.do("DELETE", "/v2/acme/web/site/manifests/v1", nil), 404, "MANIFEST_UNKNOWN")
	if log, err := e.reg.Log(context.Background(), "", 1); err != nil || log[0].Action != "rm acme/web/site:v1" || log[0].Previous != res.Digest {
		t.Fatalf("rm commit: %+v %v", log, err)
	}
	e.pushPackage("acme/web/site:v1", map[string]string{"index.html": "hello", "img/logo.png": "png"})
	// The repository's counts, cached, follow a new tag.
	e.pushPackage("acme/web/site:v3", map[string]string{"new": "1234"})
	json.Unmarshal(expect(t, e.do("GET", "/namespaces/acme/projects/web/repositories", nil), 200, ""), &l)
	if len(l.Items) != 1 || l.Items[0].Children != 3 || l.Items[0].Size != 25 {
		t.Fatalf("repositories after a push: %+v", l.Items)
	}
}

func TestWebPages(t *testing.T) {
	e := newEnv(t, Options{})
	e.pushPackage("acme/web/site:v1", map[string]string{"index.html": "one"})
	e.pushPackage("acme/web/site:v1", map[string]string{"index.html": "two"})
	get := func(p string) string {
		r := e.do("GET", p, nil)
		b := expect(t, r, 200, "")
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: Content-Type %q", p, r.Header.Get("Content-Type"))
		}
		return string(b)
	}
	for p, want := range map[string][]string{
		"/":                        {"acme", "Namespaces"},
		"/acme/":                   {"web"},
		"/acme/web/":               {"site"},
		"/acme/web/site/":          {"v1", "package"},
		"/acme/web/site/tags/v1/":  {"index.html", "History", "Test Pusher", "/v2/acme/web/site/blobs/sha256:", ">unsigned<"},
		"/?q=sit":                  {"acme/web/site", "repository"},
		"/?q=%3Cscript%3E":         {"Nothing matches", "&lt;script&gt;"},
		"/acme/web/site/tags/v1":   {"index.html"},
		"/_opm/style.css":          nil,
		"/acme/web/site/tags/v1/x": nil,
	} {
		if p == "/_opm/style.css" || strings.HasSuffix(p, "/x") {
			continue
		}
		body := get(p)
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: no %q in the page", p, w)
			}
		}
	}
	// Two pushes: the tag page shows the previous digest.
	if body := get("/acme/web/site/tags/v1/"); strings.Count(body, "push acme/web/site:v1") != 2 {
		t.Errorf("history does not show both pushes")
	}
	expect(t, e.do("GET", "/acme/web/site/tags/nope/", nil), 404, "")
	expect(t, e.do("GET", "/_opm/style.css", nil), 200, "")
}

func base64Encode(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestWriteSite(t *testing.T) {
	e := newEnv(t, Options{})
	e.pushPackage("acme/web/site:v1", map[string]string{"index.html": "one", "a/b.txt": "b"})
	e.pushPackage("acme/tools/cli:2.0", map[string]string{"cli": "x"})
	dir := t.TempDir()
	res, err := WriteSite(context.Background(), e.reg, dir, SiteOptions{BlobURL: "https://blobs.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pages != 8 || res.JSON != 8 {
		t.Errorf("%d pages, %d JSON files; want 8 and 8", res.Pages, res.JSON)
	}
	for _, p := range []string{"index.html", "acme/index.html", "acme/web/site/index.html", "acme/web/site/tags/v1/index.html", "_opm/style.css",
		"_opm/api/namespaces.json", "_opm/api/namespaces/acme/projects/web/repositories/site/tags.json", "_opm/api/namespaces/acme/projects/web/repositories/site/tags/v1.json"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, "acme/web/site/tags/v1/index.html"))
	for _, want := range []string{`href="../../../../../_opm/style.css"`, "https://blobs.example.com/blobs/sha256/", "a/b.txt"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("tag page: no %q", want)
		}
	}
	var td TagDetail
	b, _ := os.ReadFile(filepath.Join(dir, "_opm/api/namespaces/acme/projects/web/repositories/site/tags/v1.json"))
	if err := json.Unmarshal(b, &td); err != nil || len(td.Files) != 2 {
		t.Fatalf("tag JSON: %v %+v", err, td)
	}
}

// Concurrent writers: every PUT to its own tag is one commit; PUTs to one
// tag end with one of them; readers never see a torn state; a blob delete
// racing a manifest PUT never leaves a tag naming a missing blob.
func TestConcurrentWrites(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/conc/repo"
	cfg := e.putBlob(repo, []byte(`{"os":"linux"}`))
	mk := func(layer digest.Digest, n int64) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":14},"layers":[{"mediaType":"application/octet-stream","digest":"%s","size":%d}]}`,
			opm.MediaTypeManifest, cfg, layer, n))
	}
	before := e.commits()
	var wg sync.WaitGroup
	const n = 8
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			blob := []byte(fmt.Sprintf("layer %d", i))
			d := digest.FromBytes(blob)
			req, _ := http.NewRequest("POST", e.url+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), bytes.NewReader(blob))
			req.Header.Set("Authorization", "Bearer "+testToken)
			if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 201 {
				t.Errorf("blob %d: %v", i, err)
			}
			req, _ = http.NewRequest("PUT", e.url+"/v2/"+repo+"/manifests/t"+fmt.Sprint(i), bytes.NewReader(mk(d, int64(len(blob)))))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", opm.MediaTypeManifest)
			if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 201 {
				t.Errorf("manifest %d: %v %v", i, err, res.Status)
			}
		}()
		go func() {
			defer wg.Done()
			for range 5 {
				res, err := http.Get(e.url + "/v2/" + repo + "/tags/list")
				if err != nil || res.StatusCode != 200 {
					t.Errorf("tags list: %v", err)
					continue
				}
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	if got := e.commits() - before; got != n {
		t.Fatalf("%d commits for %d tags", got, n)
	}

	// A delete of a blob racing the PUT of a manifest that names it: either
	// the PUT fails (blob gone) or the delete is refused, never both succeed.
	for i := range 10 {
		blob := []byte(fmt.Sprintf("race %d", i))
		d := e.putBlob(repo, blob)
		m := mk(d, int64(len(blob)))
		var put, del int
		var rw sync.WaitGroup
		rw.Add(2)
		go func() {
			defer rw.Done()
			req, _ := http.NewRequest("PUT", e.url+"/v2/"+repo+"/manifests/race", bytes.NewReader(m))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", opm.MediaTypeManifest)
			res, _ := http.DefaultClient.Do(req)
			put = res.StatusCode
			res.Body.Close()
		}()
		go func() {
			defer rw.Done()
			req, _ := http.NewRequest("DELETE", e.url+"/v2/"+repo+"/blobs/"+d.String(), nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			res, _ := http.DefaultClient.Do(req)
			del = res.StatusCode
			res.Body.Close()
		}()
		rw.Wait()
		if put == 201 && del == 202 {
			t.Fatalf("round %d: manifest committed and its blob deleted", i)
		}
		if put == 201 && !e.reg.HasLocal(d) {
			t.Fatalf("round %d: tag names a missing blob", i)
		}
	}
}

// With a bucket, an upload lands in the bucket and the local store; a blob
// only in the bucket is fetched (verified) when first read.
func TestBucketBlobs(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	reg, err := registry.Open(context.Background(), home)
	if err != nil {
		t.Fatal(err)
	}
	bucket := filepath.Join(dir, "bucket")
	os.MkdirAll(bucket, 0o755)
	if err := reg.SetConfig(context.Background(), "opm.blobs", "file://"+bucket); err != nil {
		t.Fatal(err)
	}
	reg.Close()
	reg, err = registry.Open(context.Background(), home)
	if err != nil {
		t.Fatal(err)
	}
	if !reg.HasBucket() {
		t.Fatal("no bucket after opm.blobs")
	}
	srv, err := New(reg, Options{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer func() { hs.Close(); srv.Close(); reg.Close() }()
	e := &env{t: t, reg: reg, srv: srv, url: hs.URL}
	blob := bytes.Repeat([]byte("bucket "), 1000)
	d := e.putBlob("acme/b/r", blob)
	b, err := cas.OpenBucket(context.Background(), "file://"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Stat(context.Background(), d); err != nil {
		t.Fatalf("upload not in the bucket: %v", err)
	}
	if err := os.Remove(reg.LocalPath(d)); err != nil {
		t.Fatal(err)
	}
	h := e.do("HEAD", "/v2/acme/b/r/blobs/"+d.String(), nil) // no fetch for HEAD
	expect(t, h, 200, "")
	if reg.HasLocal(d) || h.ContentLength != int64(len(blob)) {
		t.Fatalf("HEAD: local %v, length %d", reg.HasLocal(d), h.ContentLength)
	}
	r := e.do("GET", "/v2/acme/b/r/blobs/"+d.String(), nil, "Range: bytes=0-6")
	if b := expect(t, r, 206, ""); string(b) != "bucket " || !reg.HasLocal(d) {
		t.Fatalf("GET from the bucket: %q, local %v", b, reg.HasLocal(d))
	}
}

// FuzzRequests: any method, path and body gets an answer below 500, never a
// panic.
func FuzzRequests(f *testing.F) {
	reg, err := registry.Open(context.Background(), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer reg.Close()
	srv, err := New(reg, Options{Token: testToken})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	for _, s := range []struct {
		m    uint8
		path string
		body string
	}{
		{0, "/v2/a/b/c/manifests/v1", ""},
		{2, "/v2/a/b/c/manifests/v1", `{"schemaVersion":2,"manifests":[]}`},
		{2, "/v2/a/b/c/manifests/v1", `{"schemaVersion":2,"config":{"digest":"sha256:` + strings.Repeat("a", 64) + `","size":1},"layers":[]}`},
		{1, "/v2/a/b/c/blobs/uploads/?digest=sha256:" + strings.Repeat("0", 64), "x"},
		{1, "/v2/a/b/c/blobs/uploads/?mount=sha256:abc&from=x/y/z", ""},
		{3, "/v2/a/b/c/blobs/uploads/abc", "x"},
		{0, "/v2/a/b/c/tags/list?n=1&last=%ff", ""},
		{0, "/namespaces/a/projects/b/repositories/c/tags/d", ""},
		{0, "/a/b/c/tags/d/", ""},
		{0, "/?q=%00", ""},
		{4, "/v2/a/b/c/blobs/sha256:" + strings.Repeat("f", 64), ""},
	} {
		f.Add(s.m, s.path, []byte(s.body))
	}
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
	f.Fuzz(func(t *testing.T, m uint8, path string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") {
			return
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://opm"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s: %d %s", req.Method, path, w.Code, w.Body.Bytes())
		}
	})
}

// A push by digest with ?tag= sets every tag in one commit and says so in
// OCI-Tag.
func TestPushByDigestWithTags(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/tp/app"
	cfg := e.putBlob(repo, []byte("{}"))
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","digest":"%s","size":2},"layers":[]}`, opm.MediaTypeManifest, opm.MediaTypeEmpty, cfg))
	d := digest.FromBytes(m)
	before := e.commits()
	r := e.do("PUT", "/v2/"+repo+"/manifests/"+d.String()+"?tag=a&tag=b&tag=a", m, "Content-Type: "+opm.MediaTypeManifest)
	expect(t, r, 201, "")
	if r.Header.Get("OCI-Tag") != "a, b" || e.commits() != before+1 {
		t.Fatalf("OCI-Tag %q, %d commits", r.Header.Get("OCI-Tag"), e.commits()-before)
	}
	for _, tag := range []string{"a", "b"} {
		if b := expect(t, e.do("GET", "/v2/"+repo+"/manifests/"+tag, nil), 200, ""); !bytes.Equal(b, m) {
			t.Fatalf("tag %s differs", tag)
		}
	}
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/"+d.String()+"?tag=-bad", m, "Content-Type: "+opm.MediaTypeManifest), 400, "TAG_INVALID")
}

// TestDeleteBlobWaitsForPush: a blob DELETE waits while a push holds the
// gc lock (it may have found the blob stored and be about to name it), and
// once the push has committed a tag naming the blob, the DELETE is refused:
// no tag ever names a missing blob. (It used to answer 202 at once and
// remove the blob under the push.)
func TestDeleteBlobWaitsForPush(t *testing.T) {
	e := newEnv(t, Options{})
	content := "a file the push will name"
	d := e.putBlob("a/b/c", []byte(content))                                  // stored, named by nothing yet
	release, err := registry.HoldForWrite(context.Background(), e.reg.Home()) // the push, in flight
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *http.Response, 1)
	go func() { done <- e.do("DELETE", "/v2/a/b/c/blobs/"+d.String(), nil) }()
	select {
	case r := <-done:
		release()
		t.Fatalf("DELETE answered %s while a push held the gc lock", r.Status)
	case <-time.After(300 * time.Millisecond):
	}
	e.pushPackage("a/b/c:v1", map[string]string{"f": content}) // names the stored blob
	release()
	select {
	case r := <-done:
		expect(t, r, http.StatusMethodNotAllowed, "DENIED")
	case <-time.After(opmtest.WaitTimeout):
		t.Fatal("DELETE still waiting after the push let go")
	}
	if !e.reg.HasLocal(d) {
		t.Fatal("the blob a tag names was deleted")
	}
	expect(t, e.do("GET", "/v2/a/b/c/blobs/"+d.String(), nil), 200, "")
}

// TestListingTagOrder: a repository's tags come in version order (v1.9
// before v1.10, versions before other names, those in natural order), ?sort=
// chooses another, a page's Link continues in the same order, and an unknown
// order is refused.
func TestListingTagOrder(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tag := range []string{"v1.10", "latest", "v1.9", "build-10", "v1.9.1", "build-9", "v2.0.0-rc1"} {
		e.pushPackage("acme/web/site:"+tag, map[string]string{"f": tag})
	}
	names := func(path string) (string, string) {
		r := e.do("GET", path, nil)
		var l Listing
		json.Unmarshal(expect(t, r, 200, ""), &l)
		var out []string
		for _, tg := range l.Tags {
			out = append(out, tg.Name)
		}
		return strings.Join(out, " "), r.Header.Get("Link")
	}
	base := "/namespaces/acme/projects/web/repositories/site/tags"
	if got, want := func() string { s, _ := names(base); return s }(), "v1.9 v1.9.1 v1.10 v2.0.0-rc1 build-9 build-10 latest"; got != want {
		t.Fatalf("tags: %q, want %q", got, want)
	}
	if got, want := func() string { s, _ := names(base + "?sort=name"); return s }(), "build-10 build-9 latest v1.10 v1.9 v1.9.1 v2.0.0-rc1"; got != want {
		t.Fatalf("tags by name: %q, want %q", got, want)
	}
	got, link := names(base + "?n=2&last=v1.9.1")
	if got != "v1.10 v2.0.0-rc1" || !strings.Contains(link, "last=v2.0.0-rc1") {
		t.Fatalf("page after v1.9.1: %q, Link %q", got, link)
	}
	expect(t, e.do("GET", base+"?sort=size", nil), 400, "")
	// The repository's web page lists them in the same order.
	page := string(expect(t, e.do("GET", "/acme/web/site/", nil), 200, ""))
	at := func(tag string) int { return strings.Index(page, "/acme/web/site/tags/"+tag+"/") }
	if a, b, c := at("v1.9"), at("v1.10"), at("latest"); a < 0 || !(a < b && b < c) {
		t.Errorf("web page: v1.9 at %d, v1.10 at %d, latest at %d; want them in that order", a, b, c)
	}
}
