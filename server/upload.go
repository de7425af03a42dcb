package server

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// session finds the upload session of rt, held (the caller Releases it),
// or answers 404.
func (s *Server) session(w http.ResponseWriter, r *http.Request, rt ociRoute) (*registry.Upload, bool) {
	up, ok := s.uploads.Get(rt.repo, rt.arg)
	if !ok {
		writeError(w, r, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "no such upload session")
	}
	return up, ok
}

func (s *Server) location(w http.ResponseWriter, up *registry.Upload) {
	w.Header().Set("Location", "/v2/"+up.Repo().Path()+"/blobs/uploads/"+up.ID())
	w.Header().Set("Docker-Upload-UUID", up.ID())
	if n := up.Size(); n > 0 {
		w.Header().Set("Range", fmt.Sprintf("0-%d", n-1))
	} else {
		w.Header().Set("Range", "0-0")
	}
}

func (s *Server) blobCreated(w http.ResponseWriter, repo opm.Repository, d digest.Digest) {
	w.Header().Set("Location", "/v2/"+repo.Path()+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.WriteHeader(http.StatusCreated)
}

// startUpload: POST …/blobs/uploads/ — a mount (?mount=&from=), a whole blob
// (?digest=, body), or a new session.
func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		if d, err := opm.ParseDigest(m); err == nil {
			if _, err := s.reg.StatBlob(r.Context(), d); err == nil {
				// Blobs are shared by every repository: the mount is
				// already done, whatever ?from= says.
				s.blobCreated(w, rt.repo, d)
				return
			}
		}
		// Not mountable: fall back to a new session, as the spec asks.
	} else if ds := q.Get("digest"); ds != "" {
		d, err := opm.ParseDigest(ds)
		if err != nil {
			writeError(w, r, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
			return
		}
		if err := s.uploads.PutWhole(r.Context(), d, r.ContentLength, r.Body); err != nil {
			s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
			return
		}
		s.blobCreated(w, rt.repo, d)
		return
	}
	up, err := s.uploads.Start(rt.repo)
	if err != nil {
		s.fail(w, r, err, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
		return
	}
	s.location(w, up)
	up.Release()
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	up, ok := s.session(w, r, rt)
	if !ok {
		return
	}
	defer up.Release()
	s.location(w, up)
	w.WriteHeader(http.StatusNoContent)
}

// contentRange parses "start-end" (the spec's form, also with a "bytes "
// prefix).
func contentRange(h string) (start, end int64, err error) {
	h = strings.TrimPrefix(strings.TrimSpace(h), "bytes ")
	h, _, _ = strings.Cut(h, "/")
	a, b, ok := strings.Cut(h, "-")
	if ok {
		start, err = strconv.ParseInt(a, 10, 64)
		if err == nil {
			end, err = strconv.ParseInt(b, 10, 64)
		}
	}
	if !ok || err != nil || start < 0 || end < start {
		return 0, 0, fmt.Errorf("Content-Range %q: want <start>-<end>", h)
	}
	return start, end, nil
}

// errRangeTooBig refuses a Content-Range past the largest blob: its
// arithmetic (end+1) would overflow.
var errRangeTooBig = fmt.Errorf("Content-Range ends past the largest blob, %d bytes", int64(opm.MaxSize))

// chunk appends the request body to the session, checking Content-Range.
// It reports false, having answered, on a refused chunk.
func (s *Server) chunk(w http.ResponseWriter, r *http.Request, up *registry.Upload) bool {
	body, want := io.Reader(r.Body), int64(-1) // want: up.Size() after the chunk
	cr := r.Header.Get("Content-Range")
	if cr != "" {
		start, end, err := contentRange(cr)
		if err != nil {
			writeError(w, r, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
			return false
		}
		if end >= opm.MaxSize {
			s.location(w, up)
			writeError(w, r, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", errRangeTooBig.Error())
			return false
		}
		if start != up.Size() {
			s.location(w, up)
			writeError(w, r, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID",
				fmt.Sprintf("chunk starts at %d, the upload has %d bytes", start, up.Size()))
			return false
		}
		if r.ContentLength >= 0 && r.ContentLength != end-start+1 {
			writeError(w, r, http.StatusBadRequest, "BLOB_UPLOAD_INVALID",
				fmt.Sprintf("Content-Range %q but Content-Length %d", cr, r.ContentLength))
			return false
		}
		// A body of unknown length (chunked) must still be the range's
		// length: one byte more than that already tells.
		want = end + 1
		body = io.LimitReader(r.Body, want-up.Size()+1)
	}
	err := up.Write(body)
	if err == nil && want >= 0 && up.Size() != want {
		err = opm.Errorf(opm.ErrInvalid, "Content-Range %q but the upload now has %d bytes", cr, up.Size())
	}
	if err != nil {
		// The file and hash may hold a partial chunk: the session cannot
		// continue consistently.
		up.Remove()
		s.fail(w, r, err, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
		return false
	}
	return true
}

func (s *Server) patchUpload(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	up, ok := s.session(w, r, rt)
	if !ok {
		return
	}
	defer up.Release()
	if !s.chunk(w, r, up) {
		return
	}
	s.location(w, up)
	w.WriteHeader(http.StatusAccepted)
}

// finishUpload: PUT …/uploads/<id>?digest= with the last chunk (or none).
// The bytes are verified against the digest before the blob is stored.
func (s *Server) finishUpload(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	d, err := opm.ParseDigest(r.URL.Query().Get("digest"))
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	up, ok := s.session(w, r, rt)
	if !ok {
		return
	}
	defer up.Release()
	if !s.chunk(w, r, up) {
		return
	}
	if err := up.Finish(r.Context(), d); err != nil {
		s.fail(w, r, err, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
		return
	}
	s.blobCreated(w, rt.repo, d)
}

func (s *Server) cancelUpload(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	up, ok := s.session(w, r, rt)
	if !ok {
		return
	}
	up.Remove()
	up.Release()
	w.WriteHeader(http.StatusNoContent)
}
