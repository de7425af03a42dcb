package castest

import (
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// StartS3 starts an in-process S3-protocol server (gofakes3, in memory) on
// 127.0.0.1 for the duration of the test, creates a bucket in it and returns
// an s3:// URL that cas.OpenBucket opens. It sets the AWS environment (static
// credentials, no shared config, no EC2 metadata lookups), so the test must
// not run in parallel.
func StartS3(t testing.TB) string {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("opm"); err != nil {
		t.Fatalf("create S3 bucket: %v", err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)

	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_ACCESS_KEY_ID", "opm-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "opm-test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	q := url.Values{
		"endpoint":       {srv.URL},
		"use_path_style": {"true"},
		"disable_https":  {"true"},
		"region":         {"us-east-1"},
	}
	return "s3://opm?" + q.Encode()
}
