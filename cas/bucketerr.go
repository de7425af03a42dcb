package cas

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"

	"github.com/openpm/opm"
)

// Schemes are the bucket URL schemes opm opens.
var Schemes = []string{"file", "s3", "gs", "azblob", "mem"}

// bucketName is how messages name a bucket: its URL without the query
// (which may hold endpoints and options, never a secret gocloud reads).
func bucketName(rawURL string) string {
	if i := strings.IndexByte(rawURL, '?'); i >= 0 {
		return rawURL[:i]
	}
	return rawURL
}

// openError is the one-line error for a bucket URL gocloud cannot open.
func openError(rawURL string, err error) error {
	name := bucketName(rawURL)
	u, perr := neturl.Parse(rawURL)
	switch {
	case perr != nil || u.Scheme == "":
		return opm.Errorf(opm.ErrInvalid, "bucket %q: not a URL: want one of %s", rawURL, schemeList())
	case !known(u.Scheme):
		return opm.Errorf(opm.ErrInvalid, "bucket %s: unknown scheme %q: want one of %s", name, u.Scheme, schemeList())
	}
	return opm.Errorf(opm.ErrInvalid, "bucket %s: %s", name, innermost(err))
}

func known(scheme string) bool {
	for _, s := range Schemes {
		if s == scheme {
			return true
		}
	}
	return false
}

func schemeList() string {
	var b strings.Builder
	for i, s := range Schemes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s + "://")
	}
	return b.String()
}

// Check makes sure the bucket can be used, with the one request any reader
// may make: the attributes of a key no blob has (a read-only credential
// suffices; nothing is listed or written). Absent is the answer wanted;
// then, to tell a missing bucket from an empty one, the bucket itself is
// asked for, which a reader may not be allowed (then the bucket is taken to
// be there). Failures are one line naming the bucket and what to fix.
func (b *Bucket) Check(ctx context.Context) error {
	_, err := b.b.Attributes(ctx, "opm-check")
	if err == nil || gcerrors.Code(err) == gcerrors.NotFound && !missingBucket(err) {
		if ok, aerr := b.b.IsAccessible(ctx); aerr == nil && !ok {
			return opm.Errorf(opm.ErrNotFound, "bucket %s does not exist: create it, or fix the name", b.name)
		}
		return nil
	}
	return b.explain(err)
}

// explain turns an error of a bucket call into one line naming the bucket,
// what went wrong (the service's own code where it gives one) and what to
// fix, keeping err for errors.Is and errors.As.
func (b *Bucket) explain(err error) error {
	detail := serviceCode(err) + sdkAttempts(err)
	var kind error
	var msg string
	switch {
	case opm.KindOf(err).Err != nil: // opm's own, or the caller's cancellation
		return err
	case missingBucket(err):
		kind, msg = opm.ErrNotFound, " does not exist: create it, or fix the name"
	case gcerrors.Code(err) == gcerrors.PermissionDenied || httpStatus(err) == http.StatusUnauthorized || httpStatus(err) == http.StatusForbidden:
		kind, msg = opm.ErrPermission, ": access denied"+detail+": check "+credentialHint(b.name)
	case unreachable(err) != "":
		return &explained{err: err, msg: "bucket " + b.name + ": cannot reach the server: " + unreachable(err) + " (check the endpoint, the network, and that the server is up)"}
	case httpStatus(err) != 0:
		return &explained{err: err, msg: "bucket " + b.name + ": the server answered" + detail}
	default:
		return &explained{err: err, msg: "bucket " + b.name + ": " + innermost(err)}
	}
	return &explained{err: opm.WithKind(kind, err), msg: "bucket " + b.name + msg}
}

// sdkAttempts says how many tries an SDK that retries on its own (the AWS
// SDK's uploads, see sdkRetryer) made before it gave up, when it says so.
func sdkAttempts(err error) string {
	var e *retry.MaxAttemptsError
	if errors.As(err, &e) {
		return fmt.Sprintf(", failed after %d attempts", e.Attempt)
	}
	return ""
}

// explained is an error whose message replaces its cause's.
type explained struct {
	err error
	msg string
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// credentialHint names the credentials each kind of bucket is opened with.
func credentialHint(name string) string {
	switch {
	case strings.HasPrefix(name, "s3://"):
		return "the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ?profile=, ~/.aws/credentials) and what they allow (docs/storage.md)"
	case strings.HasPrefix(name, "gs://"):
		return "the Google credentials (GOOGLE_APPLICATION_CREDENTIALS, or gcloud auth application-default login) and what they allow (docs/storage.md)"
	case strings.HasPrefix(name, "azblob://"):
		return "the Azure credentials (AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, or AZURE_STORAGE_CONNECTION_STRING) and what they allow (docs/storage.md)"
	}
	return "the permissions of the bucket's directory"
}

// missingBucket reports a service's "no such bucket" answer.
func missingBucket(err error) bool {
	switch c := serviceCodeOf(err); c {
	case "NoSuchBucket", "ContainerNotFound":
		return true
	}
	var g *googleapi.Error
	return errors.As(err, &g) && g.Code == http.StatusNotFound && strings.Contains(strings.ToLower(g.Message), "bucket")
}

// serviceCodeOf is the error code a cloud service answered with, if any.
func serviceCodeOf(err error) string {
	var aws smithy.APIError
	if errors.As(err, &aws) {
		return aws.ErrorCode()
	}
	var az *azcore.ResponseError
	if errors.As(err, &az) {
		return az.ErrorCode
	}
	var g *googleapi.Error
	if errors.As(err, &g) && len(g.Errors) > 0 {
		return g.Errors[0].Reason
	}
	return ""
}

// serviceCode is serviceCodeOf with the HTTP status, as " (403
// SignatureDoesNotMatch)", or "".
func serviceCode(err error) string {
	c, s := serviceCodeOf(err), httpStatus(err)
	switch {
	case c != "" && s != 0 && c != http.StatusText(s):
		return " (" + http.StatusText(s) + ", " + c + ")"
	case c != "":
		return " (" + c + ")"
	case s != 0:
		return " (" + http.StatusText(s) + ")"
	}
	return ""
}

// httpStatus is the HTTP status of a cloud SDK's response error, or 0.
func httpStatus(err error) int {
	var aws interface{ HTTPStatusCode() int }
	if errors.As(err, &aws) {
		return aws.HTTPStatusCode()
	}
	var az *azcore.ResponseError
	if errors.As(err, &az) {
		return az.StatusCode
	}
	var g *googleapi.Error
	if errors.As(err, &g) {
		return g.Code
	}
	return 0
}

// unreachable describes a failure to reach the server, or is "".
func unreachable(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "no such host " + dns.Name
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Err != nil {
			return op.Err.Error()
		}
		return "cannot connect"
	}
	return ""
}

// innermost is the last line of the innermost error of err's chain, the
// part of gocloud's and the SDKs' wrapped messages that says what happened.
func innermost(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	s := strings.TrimSpace(err.Error())
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[i+1:])
	}
	return s
}
