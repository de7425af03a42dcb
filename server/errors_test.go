package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// TestFailStatus: the HTTP status of each kind of failure is the error
// table's; the OCI code is the endpoint's for not found and invalid; a
// locked home says when to retry; the message is the error's own, with no
// kind word trimmed or added.
func TestFailStatus(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{opm.Errorf(opm.ErrNotFound, "x"), 404, "BLOB_UNKNOWN"},
		{opm.Errorf(opm.ErrInvalid, "x"), 400, "DIGEST_INVALID"},
		{opm.Errorf(opm.ErrDigestInvalid, "x"), 400, "DIGEST_INVALID"},
		{opm.WithKind(opm.ErrDigestInvalid, opm.Errorf(opm.ErrIntegrity, "x")), 400, "DIGEST_INVALID"},
		{opm.Errorf(opm.ErrIntegrity, "x"), 500, "UNKNOWN"}, // stored content failing its check is the registry's fault
		{opm.Errorf(opm.ErrConflict, "x"), 409, "DENIED"},
		{opm.Errorf(opm.ErrExists, "x"), 409, "DENIED"},
		{opm.Errorf(opm.ErrLocked, "x"), 503, "UNAVAILABLE"},
		{opm.Errorf(opm.ErrPermission, "x"), 403, "DENIED"},
		{opm.Errorf(opm.ErrTooLarge, "x"), 413, "SIZE_INVALID"},
		{opm.Errorf(opm.ErrTooMany, "x"), 429, "TOOMANYREQUESTS"},
		{opm.Errorf(opm.ErrTooSlow, "x"), 408, "BLOB_UPLOAD_INVALID"},
		{opm.WithKind(registry.ErrBlobUnknown, errors.New("x")), 400, "MANIFEST_BLOB_UNKNOWN"},
		{opm.WithKind(registry.ErrSizeInvalid, errors.New("x")), 400, "SIZE_INVALID"},
		{opm.WithKind(registry.ErrBlobNamed, errors.New("x")), 405, "DENIED"},
		{opm.WithKind(context.Canceled, errors.New("x")), 499, "UNKNOWN"},
		{errors.New("x"), 500, "UNKNOWN"},
	} {
		w := httptest.NewRecorder()
		s.fail(w, httptest.NewRequest("GET", "/v2/a/b/c/blobs/x", nil), c.err, "BLOB_UNKNOWN", "DIGEST_INVALID")
		body := w.Body.String()
		if w.Code != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) || !strings.Contains(body, `"message":"x"`) {
			t.Errorf("%v: %d %s, want %d %s", c.err, w.Code, body, c.status, c.code)
		}
		if later := errors.Is(c.err, opm.ErrLocked) || errors.Is(c.err, opm.ErrTooMany); later != (w.Header().Get("Retry-After") != "") {
			t.Errorf("%v: Retry-After %q", c.err, w.Header().Get("Retry-After"))
		}
		if errors.Is(c.err, registry.ErrBlobNamed) && w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("405 without Allow: %v", w.Header())
		}
	}
}
