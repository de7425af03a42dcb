package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/registry"
)

// TestServedTypeIsValidated: a tag file committed by git with a mediaType
// opm does not accept (text/html: stored script on the pages' origin) is
// served as application/octet-stream, never with the type it names.
func TestServedTypeIsValidated(t *testing.T) {
	e := newEnv(t, Options{})
	meta, err := gitmeta.Open(filepath.Join(e.reg.Home(), "meta.git"))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	evil := []byte(`{"schemaVersion":2,"mediaType":"text/html","config":{"mediaType":"x","digest":"` + opm.EmptyDigest.String() + `","size":2},"layers":[],"x":"<script>alert(1)</script>"}`)
	_, _, err = meta.Update(context.Background(), gitmeta.Signature{Name: "mallory", Email: "m@example.org"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{{Path: "acme/web/site/tags/evil.json", Data: evil}}, gitmeta.Message{Subject: "evil"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/v2/acme/web/site/manifests/evil", nil)
	b := expect(t, r, 200, "")
	if ct := r.Header.Get("Content-Type"); ct != opm.MediaTypeOctet || !bytes.Equal(b, evil) {
		t.Fatalf("served as %q: %s", ct, b)
	}
}

// TestHTTPLimits: a manifest over 4 MiB, a Content-Range whose end would
// overflow, the session after the last one allowed, and a body trickled
// too slowly are refused with their own statuses; an auth scheme in any
// case is accepted.
func TestHTTPLimits(t *testing.T) {
	e := newEnv(t, Options{})
	big := bytes.Repeat([]byte(" "), MaxHTTPManifestSize+1)
	expect(t, e.do("PUT", "/v2/a/b/c/manifests/v1", big, "Content-Type: "+opm.MediaTypeManifest), 413, "SIZE_INVALID")

	// Content-Range arithmetic: end = MaxInt64 used to be accepted and its
	// body dropped.
	r := e.do("POST", "/v2/a/b/c/blobs/uploads/", nil)
	expect(t, r, 202, "")
	loc := r.Header.Get("Location")
	expect(t, e.do("PATCH", loc, []byte("x"), fmt.Sprintf("Content-Range: 0-%d", int64(math.MaxInt64))), 416, "BLOB_UPLOAD_INVALID")

	// Auth schemes are matched without case (RFC 7235).
	for _, scheme := range []string{"bearer ", "BEARER ", "Bearer  "} {
		expect(t, e.doAuth(scheme+testToken, "POST", "/v2/a/b/c/blobs/uploads/", nil), 202, "")
	}
	expect(t, e.doAuth("basic "+base64Encode("u:"+testToken), "POST", "/v2/a/b/c/blobs/uploads/", nil), 202, "")

	// Too many sessions: 429 with Retry-After (it was 413).
	for {
		up, err := e.srv.uploads.Start(opm.Repository{Namespace: "a", Project: "b", Name: "c"})
		if errors.Is(err, opm.ErrTooMany) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		up.Release()
	}
	r = e.do("POST", "/v2/a/b/c/blobs/uploads/", nil)
	expect(t, r, 429, "TOOMANYREQUESTS")
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

// TestSlowBody: a body that brings less than the minimum in a window is
// cut off with 408, and holds nothing: no session, no blob.
func TestSlowBody(t *testing.T) {
	window, min := bodyWindow, bodyMinBytes
	bodyWindow, bodyMinBytes = 200*time.Millisecond, 1000
	defer func() { bodyWindow, bodyMinBytes = window, min }()
	e := newEnv(t, Options{})
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		for range 20 { // 10 bytes every 100 ms: far below 1000 in 200 ms
			if _, err := pw.Write([]byte("0123456789")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	req, err := http.NewRequest("POST", e.url+"/v2/a/b/c/blobs/uploads/?digest="+opm.EmptyDigest.String(), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.ContentLength = 1 << 30 // declared huge, trickled
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, 408, "BLOB_UPLOAD_INVALID")
	if e.reg.HasLocal(opm.EmptyDigest) {
		t.Error("a trickled body stored a blob")
	}
}

// TestHTTPServerTimeouts: the server opm serves with closes idle
// keep-alive connections and bounds the headers' arrival.
func TestHTTPServerTimeouts(t *testing.T) {
	hs := NewHTTPServer(http.NotFoundHandler(), nil)
	if hs.IdleTimeout <= 0 || hs.ReadHeaderTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("limits %v %v %v", hs.IdleTimeout, hs.ReadHeaderTimeout, hs.MaxHeaderBytes)
	}
	hs.IdleTimeout = 100 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// The answer, then EOF once the connection idles out; only a hang
	// reaches the deadline.
	c.SetReadDeadline(time.Now().Add(opmtest.WaitTimeout))
	b, err := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 404") {
		t.Fatalf("answer %q", b)
	}
	if err != nil {
		t.Fatalf("the idle connection was not closed: %v", err)
	}
}

// TestPageHeaders: pages (and their 404) forbid scripts, frames and
// referrers.
func TestPageHeaders(t *testing.T) {
	e := newEnv(t, Options{})
	e.pushPackage("acme/web/site:v1", map[string]string{"a": "a"})
	for _, p := range []string{"/", "/acme/", "/acme/web/site/tags/v1/", "/nosuch/"} {
		r := e.do("GET", p, nil)
		readAll(t, r)
		for k, want := range map[string]string{"Content-Security-Policy": "default-src 'none'", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := r.Header.Get(k); !strings.Contains(got, want) {
				t.Errorf("%s: %s %q", p, k, got)
			}
		}
	}
}

// commitFile commits data at path p of the home's metadata as another git
// writer would, past every check of the registry.
func (e *env) commitFile(p string, data []byte) {
	e.t.Helper()
	meta, err := gitmeta.Open(filepath.Join(e.reg.Home(), "meta.git"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer meta.Close()
	_, _, err = meta.Update(context.Background(), gitmeta.Signature{Name: "mallory", Email: "m@example.org"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{{Path: p, Data: data, Delete: data == nil}}, gitmeta.Message{Subject: "by hand"}, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestDeleteBlobKeepsWhenInDoubt: a blob DELETE keeps blobs by gc's rule.
// A stored manifest that does not parse (committed by git) may name any
// blob: while it stands no blob is deleted (405), as gc refuses to run;
// once it is gone the DELETE goes through. A manifest whose digests are
// written with JSON escapes (its bytes never spell the hex) keeps its blob
// too. (Both DELETEs used to answer 202 and remove a blob a tag names.)
func TestDeleteBlobKeepsWhenInDoubt(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/img/app"
	cfg := e.putBlob(repo, []byte("{}"))

	// A tag file that names the blob but does not parse (a negative size).
	d := e.putBlob(repo, []byte("named by a broken manifest"))
	bad := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"x","digest":%q,"size":2},"layers":[{"mediaType":"x","digest":%q,"size":-1}]}`,
		opm.MediaTypeManifest, cfg, d)
	e.commitFile("acme/img/app/tags/broken.json", []byte(bad))
	expect(t, e.do("DELETE", "/v2/"+repo+"/blobs/"+d.String(), nil), 405, "DENIED")
	expect(t, e.do("GET", "/v2/"+repo+"/blobs/"+d.String(), nil), 200, "")
	if _, err := e.reg.GC(context.Background(), registry.GCOptions{}); err == nil {
		t.Fatal("gc ran over a manifest that does not parse")
	}
	e.commitFile("acme/img/app/tags/broken.json", nil)
	expect(t, e.do("DELETE", "/v2/"+repo+"/blobs/"+d.String(), nil), 202, "")

	// A valid manifest naming its layer with escapes: "\u0061" is "a".
	l := e.putBlob(repo, []byte("named with escapes"))
	hex := l.Encoded()
	escaped := "sha256:"
	for _, c := range hex {
		escaped += fmt.Sprintf(`\u%04x`, c)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"x","digest":%q,"size":2},"layers":[{"mediaType":"x","digest":"%s","size":18}]}`,
		opm.MediaTypeManifest, cfg, escaped)
	if strings.Contains(m, hex) {
		t.Fatal("the manifest spells the hex")
	}
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", []byte(m), "Content-Type: "+opm.MediaTypeManifest), 201, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/blobs/"+l.String(), nil), 405, "DENIED")
	expect(t, e.do("GET", "/v2/"+repo+"/manifests/v1", nil), 200, "")
	expect(t, e.do("GET", "/v2/"+repo+"/blobs/"+l.String(), nil), 200, "")
}

// TestDeleteManifestChildrenLast: a manifest that a committed index names
// cannot be deleted while the index stands — 409 with one line naming the
// index — as an index cannot be put before its manifests; deleted parent
// first, it goes. (The DELETE used to answer 202 and leave the index
// naming a manifest the repository does not keep.)
func TestDeleteManifestChildrenLast(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/img/app"
	cfg := e.putBlob(repo, []byte("{}"))
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"x","digest":%q,"size":2},"layers":[]}`, opm.MediaTypeManifest, cfg))
	md := digest.FromBytes(m)
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/"+md.String(), m, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d}]}`, opm.MediaTypeIndex, opm.MediaTypeManifest, md, len(m)))
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/multi", idx, "Content-Type: "+opm.MediaTypeIndex), 201, "")

	head := e.head()
	b := expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 409, "DENIED")
	if !strings.Contains(string(b), repo+":multi") || !strings.Contains(string(b), "delete that index first") {
		t.Errorf("the refusal does not say what to delete first: %s", b)
	}
	if e.head() != head {
		t.Fatal("a refused DELETE moved the head")
	}
	res, err := e.reg.Fsck(context.Background(), registry.FsckOptions{})
	if err != nil || len(res.Problems) > 0 {
		t.Fatalf("fsck: %v %+v", err, res)
	}
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/multi", nil), 202, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 202, "")

	// A child kept only under a tag: deleting the tag is deleting it.
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/child", m, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/multi", idx, "Content-Type: "+opm.MediaTypeIndex), 201, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/child", nil), 409, "DENIED")
	// A second copy may go; the last may not.
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/"+md.String(), m, "Content-Type: "+opm.MediaTypeManifest), 201, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/child", nil), 202, "")
	expect(t, e.do("DELETE", "/v2/"+repo+"/manifests/"+md.String(), nil), 409, "DENIED")
}

// TestPutManifestChecksEveryLayer: every layer is checked for presence and
// size whatever its media type, and no layer escapes the size check by
// sharing a digest — a titled "non-distributable" layer is a file of the
// package. (Such a PUT of missing 4 EiB blobs used to answer 201: a tag
// before its blobs, shown as 4.0 EiB, EIO in the mount.)
func TestPutManifestChecksEveryLayer(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/img/app"
	cfg := e.putBlob(repo, []byte("{}"))
	real := e.putBlob(repo, []byte("eleven byte"))
	missing := digest.FromString("never pushed")
	layer := func(mt string, d digest.Digest, size int64, title string) string {
		a := ""
		if title != "" {
			a = fmt.Sprintf(`,"annotations":{%q:%q}`, opm.AnnotationTitle, title)
		}
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d%s}`, mt, d, size, a)
	}
	manifest := func(layers ...string) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[%s]}`,
			opm.MediaTypeManifest, opm.ArtifactType, opm.MediaTypeEmpty, cfg, strings.Join(layers, ",")))
	}
	const huge = int64(opm.MaxSize) - 2 // 4 EiB with the config's 2 bytes
	head := e.head()
	for _, c := range []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"titled nondistributable", manifest(layer("application/vnd.oci.image.layer.nondistributable.v1.tar", missing, huge, "big")), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"titled foreign", manifest(layer("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", missing, huge, "big")), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"untitled foreign", manifest(layer("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", missing, 5, "")), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"foreign, present, lying size", manifest(layer("application/vnd.oci.image.layer.nondistributable.v1.tar", real, huge, "big")), 400, "SIZE_INVALID"},
		{"one digest, two sizes", manifest(layer(opm.MediaTypeOctet, real, 11, "a"), layer(opm.MediaTypeOctet, real, 1<<40, "b")), 400, "MANIFEST_INVALID"},
	} {
		t.Run(c.name, func(t *testing.T) {
			expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", c.body, "Content-Type: "+opm.MediaTypeManifest), c.status, c.code)
		})
	}
	if e.head() != head {
		t.Fatal("a refused PUT committed")
	}
	// The same layer present with its size is a file like any other.
	ok := manifest(layer("application/vnd.oci.image.layer.nondistributable.v1.tar", real, 11, "f"))
	expect(t, e.do("PUT", "/v2/"+repo+"/manifests/v1", ok, "Content-Type: "+opm.MediaTypeManifest), 201, "")
}
