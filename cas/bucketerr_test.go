package cas_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
)

// wantLine checks that err is one line of the wanted kind that names the
// bucket and says each of the wanted words.
func wantLine(t *testing.T, what string, err, kind error, bucket string, words ...string) {
	t.Helper()
	t.Logf("%s: %v", what, err)
	switch {
	case err == nil:
		t.Fatalf("%s: no error", what)
	case kind != nil && !errors.Is(err, kind):
		t.Errorf("%s: %v, want %v", what, err, kind)
	case strings.Contains(err.Error(), "\n"):
		t.Errorf("%s: more than one line:\n%v", what, err)
	case len(err.Error()) > 400:
		t.Errorf("%s: %d characters, want one short line: %v", what, len(err.Error()), err)
	case !strings.Contains(err.Error(), bucket):
		t.Errorf("%s: %q does not name the bucket %s", what, err, bucket)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not say %q", what, err, w)
		}
	}
}

func TestBucketUnknownScheme(t *testing.T) {
	for _, u := range []string{"ftp://host/x", "gcs://b", "s4://b?region=x"} {
		_, err := cas.OpenBucket(context.Background(), u)
		wantLine(t, u, err, opm.ErrInvalid, strings.SplitN(u, "?", 2)[0], "unknown scheme", "s3://", "gs://", "azblob://")
	}
}

// TestBucketCheck: Check (what opm remote add runs) and a first use say in
// one line that a bucket is missing or that the credentials are refused, on
// the real servers; read-only credentials pass Check and read, and are
// refused writes with the same kind of line.
func TestBucketCheck(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"s3", "gs", "azblob"} {
		t.Run(kind, func(t *testing.T) {
			srv := castest.StartServer(t, kind)
			srv.SetEnv(t)
			t.Setenv("OPM_RETRY_ATTEMPTS", "1")
			url := srv.NewBucket(t)
			b := openBucket(t, url)
			if err := b.Check(ctx); err != nil {
				t.Fatalf("Check of an empty bucket: %v", err)
			}
			blob, d := castest.Blob(3, 1000)
			castest.MustPut(t, b, d, blob)

			missing := strings.Replace(url, "opm-", "missing-", 1)
			wantLine(t, "Check of a missing bucket", openBucket(t, missing).Check(ctx), opm.ErrNotFound,
				strings.SplitN(missing, "?", 2)[0], "does not exist")

			var denied *cas.Bucket
			switch kind {
			case "s3":
				denied = openBucket(t, url+"&profile="+castest.S3WrongProfile)
				reader := openBucket(t, url+"&profile="+castest.S3ReaderProfile)
				if err := reader.Check(ctx); err != nil {
					t.Errorf("Check with read-only credentials: %v", err)
				}
				if got, err := castest.ReadAll(reader, d); err != nil || string(got) != string(blob) {
					t.Errorf("read with read-only credentials: %v", err)
				}
				b2, d2 := castest.Blob(4, 10)
				err := reader.Put(ctx, d2, int64(len(b2)), strings.NewReader(string(b2)))
				wantLine(t, "write with read-only credentials", err, opm.ErrPermission, "s3://opm-", "access denied", "AWS_")
			case "azblob":
				t.Setenv("AZURE_STORAGE_KEY", "d3Jvbmcga2V5IGZvciBvcG0ncyB0ZXN0cw==")
				denied = openBucket(t, url)
			default:
				t.Log("fake-gcs-server does not check credentials: no test of refused ones")
				return
			}
			name := strings.SplitN(url, "?", 2)[0]
			wantLine(t, "Check with wrong credentials", denied.Check(ctx), opm.ErrPermission, name, "access denied", "credentials")
			_, err := denied.Open(ctx, d)
			wantLine(t, "first read with wrong credentials", err, opm.ErrPermission, name, "access denied", d.Encoded())
		})
	}
}
