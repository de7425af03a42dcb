package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
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
		writeError(w, r, status, code, err.Error())
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
		writeError(w, r, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" is not supported here")
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
		return "", "", "TAG_INVALID", opm.Errorf(opm.ErrInvalid, "tag %q: %s", ref, opm.TagRule)
	}
	return ref, "", "", nil
}

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	tag, d, _, err := parseRef(rt.arg)
	if err != nil {
		// An unknown reference of the wrong shape is simply not there.
		writeError(w, r, http.StatusNotFound, "MANIFEST_UNKNOWN", err.Error())
		return
	}
	v, err := s.reg.View()
	if err != nil {
		s.fail(w, r, err, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
		return
	}
	mf, err := v.Manifest(opm.Reference{Repository: rt.repo, Tag: tag, Digest: d})
	if err != nil {
		s.fail(w, r, err, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
		return
	}
	h := w.Header()
	h.Set("Content-Type", mf.MediaType())
	h.Set("Docker-Content-Digest", mf.Digest.String())
	h.Set("ETag", `"`+mf.Digest.String()+`"`)
	h.Set("Content-Length", strconv.Itoa(len(mf.Body)))
	if d != "" {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	if r.Method == http.MethodHead {
		return
	}
	w.Write(mf.Body)
}

// readBody reads at most max bytes of the request body; more is an
// opm.ErrTooLarge error.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, opm.Errorf(opm.ErrTooLarge, "%d bytes, over the %d-byte limit", r.ContentLength, max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, opm.Errorf(opm.ErrTooLarge, "over the %d-byte limit", max)
	}
	return b, err
}

func (s *Server) putManifestHTTP(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	tag, d, code, err := parseRef(rt.arg)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, code, err.Error())
		return
	}
	body, err := readBody(w, r, MaxHTTPManifestSize)
	if err != nil {
		s.fail(w, r, err, "MANIFEST_INVALID", "MANIFEST_INVALID")
		return
	}
	got := digest.FromBytes(body)
	if d != "" && got != d {
		writeError(w, r, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("the manifest's bytes hash to %s, not %s", got, d))
		return
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	} else {
		ct = ""
	}
	tags := []string{}
	if tag != "" {
		tags = append(tags, tag)
	} else {
		// ?tag= on a push by digest (distribution-spec v1.2): the tags too,
		// in the same commit.
		for _, t := range r.URL.Query()["tag"] {
			if !opm.ValidTag(t) {
				writeError(w, r, http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf("tag %q is not a valid tag", t))
				return
			}
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	m, _, err := s.reg.PutManifest(r.Context(), rt.repo, tags, body, ct)
	if err != nil {
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

func (s *Server) deleteManifestHTTP(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	tag, d, code, err := parseRef(rt.arg)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, code, err.Error())
		return
	}
	if tag != "" {
		_, err = s.reg.Remove(r.Context(), opm.Reference{Repository: rt.repo, Tag: tag})
	} else {
		err = s.reg.DeleteManifest(r.Context(), rt.repo, d)
	}
	if err != nil {
		s.fail(w, r, err, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// blobDigest parses the digest of a blob URL.
func blobDigest(w http.ResponseWriter, r *http.Request, arg string, notFound bool) (digest.Digest, bool) {
	d, err := opm.ParseDigest(arg)
	if err != nil {
		if notFound {
			writeError(w, r, http.StatusNotFound, "BLOB_UNKNOWN", err.Error())
		} else {
			writeError(w, r, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		}
		return "", false
	}
	return d, true
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	d, ok := blobDigest(w, r, rt.arg, true)
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
		size, err := s.reg.StatBlob(r.Context(), d)
		if err != nil {
			s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
			return
		}
		h := found()
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		h.Set("Accept-Ranges", "bytes")
		return
	}
	b, err := s.reg.OpenBlob(r.Context(), d, -1)
	if err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	defer b.Close()
	f := b.File()
	fi, err := f.Stat()
	if err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	found()
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// deleteBlob removes a blob from the registry unless a manifest still
// names it: then 405, since deleting it would break a tag. Blobs are not
// per repository, so the check is registry-wide.
func (s *Server) deleteBlob(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	d, ok := blobDigest(w, r, rt.arg, false)
	if !ok {
		return
	}
	if err := s.reg.DeleteBlob(r.Context(), d); err != nil {
		s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// page applies ?n= and ?last= to items sorted by name and sets the Link
// header of the next page. It reports false (having answered) on a bad n.
func page[T any](w http.ResponseWriter, r *http.Request, items []T, name func(T) string) ([]T, bool) {
	return pageAfter(w, r, items, name, func(last string) int {
		return sort.Search(len(items), func(i int) bool { return name(items[i]) > last })
	})
}

// pageAfter is page over items in another order than by name: after(last)
// is where the page after the item named last begins.
func pageAfter[T any](w http.ResponseWriter, r *http.Request, items []T, name func(T) string, after func(last string) int) ([]T, bool) {
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		items = items[after(last):]
	}
	ns := q.Get("n")
	if ns == "" {
		return items, true
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 0 {
		writeError(w, r, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", fmt.Sprintf("n=%q: want a number >= 0", ns))
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
	v, err := s.reg.View()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	entries, err := v.Tags(rt.repo)
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	// A repository with no tags (never pushed, or all deleted) lists none:
	// in git an empty directory does not exist, so the two look the same.
	tags := make([]string, len(entries))
	for i, e := range entries {
		tags[i] = e.Tag
	}
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
		writeError(w, r, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	v, err := s.reg.View()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	filter := r.URL.Query().Get("artifactType")
	out, err := v.Referrers(rt.repo, d, filter)
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
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
// like the tags list. A read error below the root (a missing git object)
// fails the request rather than leave repositories out unseen.
func (s *Server) catalog(w http.ResponseWriter, r *http.Request) {
	v, err := s.reg.View()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	repos, err := v.Repositories()
	if err != nil {
		s.fail(w, r, err, "NAME_UNKNOWN", "NAME_INVALID")
		return
	}
	if repos == nil {
		repos = []string{}
	}
	repos, ok := page(w, r, repos, self)
	if !ok {
		return
	}
	writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
}
