package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// ociError is one entry of the distribution-spec error body.
type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError answers an OCI error. When r's body was not read to its end
// the connection closes after the answer: the rest of the body may never
// come (docs/http.md, "Limits").
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if bodyUnread(r) {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.Header().Del("Docker-Content-Digest")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Errors []ociError `json:"errors"`
	}{[]ociError{{Code: code, Message: msg}}})
}

// fail answers an error: its status is the error table's (opm.Kinds), its
// OCI code notFound for opm.ErrNotFound (BLOB_UNKNOWN, MANIFEST_UNKNOWN, …)
// and invalid for opm.ErrInvalid, and its message the error's own.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, notFound, invalid string) {
	k := opm.KindOf(err)
	status, code := k.HTTP, "UNKNOWN"
	switch {
	case errors.Is(err, registry.ErrBlobUnknown):
		code = "MANIFEST_BLOB_UNKNOWN"
	case errors.Is(err, registry.ErrSizeInvalid):
		code = "SIZE_INVALID"
	case errors.Is(err, registry.ErrBlobNamed):
		// Deleting it would break a manifest: not allowed on this blob.
		status, code = http.StatusMethodNotAllowed, "DENIED"
		w.Header().Set("Allow", "GET, HEAD")
	case k.Err == opm.ErrNotFound:
		code = notFound
	case k.Err == opm.ErrInvalid, k.Err == opm.ErrUsage:
		code = invalid
	case k.Err == opm.ErrDigestInvalid:
		code = "DIGEST_INVALID"
	case k.Err == opm.ErrTooLarge:
		code = "SIZE_INVALID"
	case k.Err == opm.ErrConflict, k.Err == opm.ErrExists, k.Err == opm.ErrPermission, k.Err == opm.ErrUntrusted:
		code = "DENIED"
	case k.Err == opm.ErrLocked:
		code = "UNAVAILABLE"
		w.Header().Set("Retry-After", "1")
	case k.Err == opm.ErrTooMany:
		code = "TOOMANYREQUESTS"
		w.Header().Set("Retry-After", "10")
	case k.Err == opm.ErrTooSlow:
		code = "BLOB_UPLOAD_INVALID"
	}
	if status >= 500 {
		s.log.Error("http", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, r, status, code, err.Error())
}
