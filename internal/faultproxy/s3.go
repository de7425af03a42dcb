package faultproxy

import (
	"net/url"
	"testing"

	"github.com/openpm/opm/cas/castest"
)

// StartS3 starts an in-process S3-protocol server (castest.StartS3) and a
// Proxy in front of it for the duration of the test, and returns the proxy
// and an s3:// bucket URL whose endpoint is the proxy.
// cas.OpenBucket turns the S3 SDK's own retries off, so every request the
// proxy counts is one of opm's tries. Like castest.StartS3 (which sets the
// AWS environment), the test must not run in parallel.
func StartS3(t testing.TB) (*Proxy, string) {
	t.Helper()
	s3url := castest.StartS3(t)
	u, err := url.Parse(s3url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	p, err := New(q.Get("endpoint"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	q.Set("endpoint", p.URL)
	u.RawQuery = q.Encode()
	return p, u.String()
}
