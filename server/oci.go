package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// ociRoute is a /v2/ request taken apart.
type ociRoute struct {
	repo opm.Repository
	kind string // manifests, blobs, uploads, tags, referrers
	arg  string // reference, digest or upload id
}

// parseOCI splits /v2/<name>/<kind>/<arg>. A name that is not
// namespace/project/repository is NAME_UNKNOWN when its parts are
// well-formed and NAME_INVALID otherwise.
func parseOCI(p string) (ociRoute, int, string, error) {
	rest := strings.TrimPrefix(p, "/v2/")
	seg := strings.Split(rest, "/")
	n := len(seg)
	var rt ociRoute
	var name []string
	switch {
	case n >= 3 && seg[n-3] == "blobs" && seg[n-2] == "uploads":
		name, rt.kind, rt.arg = seg[:n-3], "uploads", seg[n-1]
	case n >= 2 && seg[n-2] == "blobs" && seg[n-1] == "uploads":
		name, rt.kind = seg[:n-2], "uploads"
	case n >= 2 && seg[n-2] == "tags" && seg[n-1] == "list":
		name, rt.kind = seg[:n-2], "tags"
	case n >= 2 && (seg[n-2] == "manifests" || seg[n-2] == "blobs" || seg[n-2] == "referrers"):
		name, rt.kind, rt.arg = seg[:n-2], seg[n-2], seg[n-1]
	default:
		return rt, http.StatusNotFound, "NAME_UNKNOWN", fmt.Errorf("no such API path %q", p)
	}
	full := strings.Join(name, "/")
	repo, err := opm.ParseRepository(full)
	if err != nil {
		for _, part := range name {
			if !opm.ValidComponent(part) {
				return rt, http.StatusBadRequest, "NAME_INVALID", err
			}
		}
		return rt, http.StatusNotFound, "NAME_UNKNOWN", fmt.Errorf("repository %q: opm names are namespace/project/repository", full)
	}
	rt.repo = repo
	return rt, 0, "", nil
}

func (s *Server) serveOCI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			io.WriteString(w, "{}\n")
		}
		return
	}
	if r.URL.Path == "/v2/_catalog" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		s.catalog(w, r)
		return
	}
	rt, status, code, err := parseOCI(r.URL.Path)
	if err != nil {
		writeError(w, status, code, err.Error())
		return
	}
	key := rt.kind + " " + r.Method
	switch key {
	case "manifests GET", "manifests HEAD":
		s.getManifest(w, r, rt)
	case "manifests PUT":
		s.putManifestHTTP(w, r, rt)
	case "manifests DELETE":
		s.deleteManifestHTTP(w, r, rt)
	case "blobs GET", "blobs HEAD":
		s.getBlob(w, r, rt)
	case "blobs DELETE":
		s.deleteBlob(w, r, rt)
	case "uploads POST":
		s.startUpload(w, r, rt)
	case "uploads GET":
		s.uploadStatus(w, r, rt)
	case "uploads PATCH":
		s.patchUpload(w, r, rt)
	case "uploads PUT":
		s.finishUpload(w, r, rt)
	case "uploads DELETE":
		s.cancelUpload(w, r, rt)
	case "tags GET", "tags HEAD":
		s.listTags(w, r, rt)
	case "referrers GET", "referrers HEAD":
		s.referrers(w, r, rt)
	default:
		w.Header().Set("Allow", allowed[rt.kind])
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" is not supported here")
	}
}

var allowed = map[string]string{
	"manifests": "GET, HEAD, PUT, DELETE",
	"blobs":     "GET, HEAD, DELETE",
	"uploads":   "POST, GET, PATCH, PUT, DELETE",
	"tags":      "GET, HEAD",
	"referrers": "GET, HEAD",
}

// parseRef reads a manifest reference: a tag or a sha256 digest.
func parseRef(ref string) (tag string, d digest.Digest, code string, err error) {
	if strings.Contains(ref, ":") {
		d, err = opm.ParseDigest(ref)
		if err != nil {
			return "", "", "DIGEST_INVALID", err
		}
		return "", d, "", nil
	}
	if !opm.ValidTag(ref) {
		return "", "", "TAG_INVALID", fmt.Errorf("tag %q: must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-': %w", ref, opm.ErrInvalid)
	}
	return ref, "", "", nil
}

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	tag, d, _, err := parseRef(rt.arg)
	if err != nil {
		// An unknown reference of the wrong shape is simply not there.
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", err.Error())
		return
	}
	snap, err := s.snapshot()
	if err != nil {
		s.fail(w, r, err, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
		return
	}
	mf, err := s.readManifest(snap, rt.repo, tag, d)
	if err != nil {
		s.fail(w, r, err, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
		return
	}
	h := w.Header()
	h.Set("Content-Type", mf.mediaType)
	h.Set("Docker-Content-Digest", mf.digest.String())
	h.Set("ETag", `"`+mf.digest.String()+`"`)
	h.Set("Content-Length", strconv.Itoa(len(mf.bytes)))
	if d != "" {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	if r.Method == http.MethodHead {
		return
	}
	w.Write(mf.bytes)
}

// manifestType is a stored manifest's media type: its own mediaType field,
// else what its shape says.
func manifestType(b []byte) string {
	var m struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(b, &m) == nil {
		switch {
		case m.MediaType != "":
			return m.MediaType
		case m.Manifests != nil:
			return opm.MediaTypeIndex
		}
	}
	return opm.MediaTypeManifest
}

// readBody reads at most max bytes of the request body; more is errTooLarge.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, fmt.Errorf("%d bytes, over the %d-byte limit: %w", r.ContentLength, max, errTooLarge)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fmt.Errorf("over the %d-byte limit: %w", max, errTooLarge)
	}
	return b, err
}

func (s *Server) putManifestHTTP(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	tag, d, code, err := parseRef(rt.arg)
	if err != nil {
		writeError(w, http.StatusBadRequest, code, err.Error())
		return
	}
	body, err := readBody(w, r, opm.MaxManifestSize)
	if err != nil {
		s.fail(w, r, err, "MANIFEST_INVALID", "MANIFEST_INVALID")
		return
	}
	got := digest.FromBytes(body)
	if d != "" && got != d {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("the manifest's bytes hash to %s, not %s", got, d))
		return
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	} else {
		ct = ""
	}
	m, err := opm.ParseAnyManifest(body, ct)
	if err != nil {
		s.fail(w, r, err, "MANIFEST_INVALID", "MANIFEST_INVALID")
		return
	}
	// Children before parents: every blob (and, for an index, every
	// manifest) named must be here before the manifest is committed.
	s.gc.RLock()
	defer s.gc.RUnlock()
	release, err := registry.HoldForWrite(r.Context(), s.reg.Dir) // opm gc waits for the commit
	if err != nil {
		s.fail(w, r, err, "MANIFEST_INVALID", "MANIFEST_INVALID")
		return
	}
	defer release()
	for _, b := range m.Blobs() {
		if isForeign(b) {
			continue
		}
		size, err := s.reg.Blobs.Stat(r.Context(), b.Digest)
		if errors.Is(err, opm.ErrNotFound) {
			writeError(w, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", fmt.Sprintf("blob %s is not in the registry: push it first", b.Digest))
			return
		}
		if err != nil {
			s.fail(w, r, err, "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID")
			return
		}
		if size != b.Size {
			writeError(w, http.StatusBadRequest, "SIZE_INVALID", fmt.Sprintf("blob %s has %d bytes, the manifest says %d", b.Digest, size, b.Size))
			return
		}
	}
	if m.IsIndex() && len(m.Manifests) > 0 {
		snap, err := s.snapshot()
		if err != nil {
			s.fail(w, r, err, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
			return
		}
		all, err := s.manifests(snap, rt.repo)
		if err != nil {
			s.fail(w, r, err, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
			return
		}
		have := make(map[digest.Digest]bool, len(all))
		for _, st := range all {
			have[st.digest] = true
		}
		for _, c := range m.Manifests {
			if !have[c.Digest] {
				writeError(w, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", fmt.Sprintf("manifest %s is not in %s: push it first", c.Digest, rt.repo))
				return
			}
		}
	}
	tags := []string{}
	if tag != "" {
		tags = append(tags, tag)
	} else {
		// ?tag= on a push by digest (distribution-spec v1.2): the tags too,
		// in the same commit.
		for _, t := range r.URL.Query()["tag"] {
			if !opm.ValidTag(t) {
				writeError(w, http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf("tag %q is not a valid tag", t))
				return
			}
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	if _, err := s.putManifest(r.Context(), rt.repo, tags, body); err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "MANIFEST_INVALID")
		return
	}
	h := w.Header()
	h.Set("Location", "/v2/"+rt.repo.Path()+"/manifests/"+got.String())
	h.Set("Docker-Content-Digest", got.String())
	if m.Subject != nil {
		h.Set("OCI-Subject", m.Subject.Digest.String())
	}
	if tag == "" && len(tags) > 0 {
		h.Set("OCI-Tag", strings.Join(tags, ", "))
	}
	w.WriteHeader(http.StatusCreated)
}

// isForeign reports a non-distributable layer: the registry is not
// expected to hold it.
func isForeign(d opm.Descriptor) bool {
	return strings.Contains(d.MediaType, "nondistributable") || strings.Contains(d.MediaType, ".foreign.")
}

func (s *Server) deleteManifestHTTP(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	tag, d, code, err := parseRef(rt.arg)
	if err != nil {
		writeError(w, http.StatusBadRequest, code, err.Error())
		return
	}
	if err := s.deleteManifest(r.Context(), rt.repo, tag, d); err != nil {
		s.fail(w, r, err, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// blobDigest parses the digest of a blob URL.
func blobDigest(w http.ResponseWriter, arg string, notFound bool) (digest.Digest, bool) {
	d, err := opm.ParseDigest(arg)
	if err != nil {
		if notFound {
			writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", err.Error())
		} else {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		}
		return "", false
	}
	return d, true
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	d, ok := blobDigest(w, rt.arg, true)
	if !ok {
		return
	}
	// The headers of a found blob (never of an error: it is not immutable).
	found := func() http.Header {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Docker-Content-Digest", d.String())
		h.Set("ETag", `"`+d.String()+`"`)
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		return h
	}
	if r.Method == http.MethodHead {
		// HEAD never fetches from the bucket: the size is enough.
		size, err := s.reg.Blobs.Stat(r.Context(), d)
		if err != nil {
			s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
			return
		}
		h := found()
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		h.Set("Accept-Ranges", "bytes")
		return
	}
	defer s.reg.UseBlob(d)() // not evicted between the fetch and the open
	if err := s.reg.EnsureLocal(r.Context(), d); err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	f, err := os.Open(s.reg.Local.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("blob %s: evicted or deleted meanwhile: %w", d, opm.ErrNotFound)
	}
	if err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	found()
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// deleteBlob removes a blob from the store (and the bucket) unless a
// manifest of the registry still names it: then 405, since deleting it would
// break a tag. Blobs are not per repository, so the check is registry-wide.
func (s *Server) deleteBlob(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	d, ok := blobDigest(w, rt.arg, false)
	if !ok {
		return
	}
	s.gc.Lock()
	defer s.gc.Unlock()
	snap, err := s.snapshot()
	if err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	user, err := s.blobUser(snap, d)
	if err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	if user != "" {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "DENIED", fmt.Sprintf("blob %s is named by %s; delete that manifest first", d, user))
		return
	}
	if err := s.reg.Blobs.Delete(r.Context(), d); err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// page applies ?n= and ?last= to items sorted by name and sets the Link
// header of the next page. It reports false (having answered) on a bad n.
func page[T any](w http.ResponseWriter, r *http.Request, items []T, name func(T) string) ([]T, bool) {
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		items = items[sort.Search(len(items), func(i int) bool { return name(items[i]) > last }):]
	}
	ns := q.Get("n")
	if ns == "" {
		return items, true
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", fmt.Sprintf("n=%q: want a number >= 0", ns))
		return nil, false
	}
	if n < len(items) {
		items = items[:n]
		if n > 0 {
			v := r.URL.Query()
			v.Set("n", strconv.Itoa(n))
			v.Set("last", name(items[n-1]))
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, (&url.URL{Path: r.URL.Path, RawQuery: v.Encode()}).String()))
		}
	}
	return items, true
}

func self(s string) string { return s }

func (s *Server) listTags(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	snap, err := s.snapshot()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	entries, err := snap.ReadDir(opm.TagsDir(rt.repo))
	if err != nil && !errors.Is(err, opm.ErrNotFound) {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	// A repository with no tags (never pushed, or all deleted) lists none:
	// in git an empty directory does not exist, so the two look the same.
	tags := []string{}
	for _, e := range entries {
		if t, ok := registry.TagOfEntry(e); ok {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	tags, ok := page(w, r, tags, self)
	if !ok {
		return
	}
	writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.repo.Path(), tags})
}

func writeJSON(w http.ResponseWriter, r *http.Request, ct string, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// referrers lists the manifests of the repository whose subject is the
// digest, as an image index (distribution-spec v1.1).
func (s *Server) referrers(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	d, err := opm.ParseDigest(rt.arg)
	if err != nil {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	snap, err := s.snapshot()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	all, err := s.manifests(snap, rt.repo)
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	filter := r.URL.Query().Get("artifactType")
	seen := map[digest.Digest]bool{}
	out := []opm.Descriptor{}
	for _, st := range all {
		if seen[st.digest] {
			continue
		}
		seen[st.digest] = true
		b, err := snap.ReadFile(st.path)
		if err != nil || !bytes.Contains(b, []byte(d.Encoded())) {
			continue
		}
		m, err := opm.ParseAnyManifest(b, "")
		if err != nil || m.Subject == nil || m.Subject.Digest != d {
			continue
		}
		at := m.ArtifactType
		if at == "" && m.Config != nil {
			at = m.Config.MediaType
		}
		if filter != "" && at != filter {
			continue
		}
		out = append(out, opm.Descriptor{MediaType: m.MediaType, ArtifactType: at, Digest: st.digest, Size: int64(len(b)), Annotations: m.Annotations})
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(w, r, opm.MediaTypeIndex, struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []opm.Descriptor `json:"manifests"`
	}{2, opm.MediaTypeIndex, out})
}

// catalog lists every repository with a tag or a manifest, sorted, paged
// like the tags list.
func (s *Server) catalog(w http.ResponseWriter, r *http.Request) {
	snap, err := s.snapshot()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	repos := []string{}
	nss, err := children(snap, "")
	if err != nil && !errors.Is(err, opm.ErrNotFound) {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	// A read error below the root (a missing git object) fails the request
	// rather than leave repositories out of the catalog unseen.
	for _, ns := range nss {
		ps, err := children(snap, ns)
		if err != nil {
			s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
			return
		}
		for _, p := range ps {
			rs, err := children(snap, ns+"/"+p)
			if err != nil {
				s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
				return
			}
			for _, name := range rs {
				repos = append(repos, ns+"/"+p+"/"+name)
			}
		}
	}
	sort.Strings(repos)
	repos, ok := page(w, r, repos, self)
	if !ok {
		return
	}
	writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
}
