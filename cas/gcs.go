package cas

import (
	"context"
	neturl "net/url"
	"os"
	"strings"
	"sync"

	"gocloud.dev/blob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/gcp"

	"github.com/openpm/opm"
)

// findGoogleCredentials looks the application default credentials up, once
// a process (as gocloud's opener does): a file read, or on Google Cloud a
// request to the metadata server, not repeated for every bucket opened.
var findGoogleCredentials = sync.OnceValue(func() error {
	_, err := gcp.DefaultCredentials(context.Background())
	return err
})

// openGCS opens a gs:// URL. gocloud's opener, when it finds no Google
// credentials, prints a warning on standard output (where `--json` output
// goes) and goes on with empty ones, which every request then fails with.
// opm looks the credentials up first: without any, a URL that asks for no
// credentials (anonymous=true, for a public bucket) is opened without them
// and any other is refused with one line saying what to set. With an
// emulator (STORAGE_EMULATOR_HOST) gocloud needs none and prints nothing.
func openGCS(ctx context.Context, rawURL string) (*blob.Bucket, error) {
	if os.Getenv("STORAGE_EMULATOR_HOST") != "" || os.Getenv("STORAGE_EMULATOR_HOST_GRPC") != "" {
		return blob.OpenBucket(ctx, rawURL)
	}
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	if q.Get("universe_domain") != "" {
		return blob.OpenBucket(ctx, rawURL) // gocloud's own lookup, for its own domain
	}
	credErr := findGoogleCredentials()
	if credErr == nil {
		return blob.OpenBucket(ctx, rawURL)
	}
	if !strings.EqualFold(q.Get("anonymous"), "true") && q.Get("access_id") != "-" {
		return nil, opm.Errorf(opm.ErrPermission, "bucket %s: no Google credentials found (%s): set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth application-default login`, or add ?anonymous=true for a public bucket", bucketName(rawURL), innermost(credErr))
	}
	return (&gcsblob.URLOpener{Client: gcp.NewAnonymousHTTPClient(gcp.DefaultTransport())}).OpenBucketURL(ctx, u)
}
