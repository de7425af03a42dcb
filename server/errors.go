package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/openpm/opm"
)

// ociError is one entry of the distribution-spec error body.
type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.Header().Del("Docker-Content-Digest")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Errors []ociError `json:"errors"`
	}{[]ociError{{Code: code, Message: msg}}})
}

// fail maps an error to a status and an OCI code: notFound is the code for
// opm.ErrNotFound (BLOB_UNKNOWN, MANIFEST_UNKNOWN, …), invalid the code for
// opm.ErrInvalid.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, notFound, invalid string) {
	status, code := http.StatusInternalServerError, "UNKNOWN"
	switch {
	case errors.Is(err, opm.ErrNotFound):
		status, code = http.StatusNotFound, notFound
	case errors.Is(err, opm.ErrInvalid):
		status, code = http.StatusBadRequest, invalid
	case errors.Is(err, opm.ErrIntegrity):
		status, code = http.StatusBadRequest, "DIGEST_INVALID"
	case errors.Is(err, opm.ErrConflict):
		status, code = http.StatusConflict, "DENIED"
	case errors.Is(err, errTooLarge):
		status, code = http.StatusRequestEntityTooLarge, "SIZE_INVALID"
	case errors.Is(err, context.Canceled):
		status, code = 499, "UNKNOWN"
	}
	if status >= 500 {
		s.log.Error("http", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	msg := strings.TrimSuffix(err.Error(), ": "+opm.ErrInvalid.Error())
	writeError(w, status, code, msg)
}

var errTooLarge = errors.New("request body too large")
