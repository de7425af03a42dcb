package cas

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
)

// openAzure opens an azblob:// bucket as gocloud's own URL opener does (the
// same query options and AZURE_STORAGE_* variables, the same credential
// choice) but over two clients, as for s3://: b.b's does not retry (opm's
// Retry does), b.sdk's, for uploads, retries with b.Retry's tries and
// waits. Left to its defaults the Azure SDK retries every call three times
// with waits of seconds to a minute, under each of opm's tries: minutes
// before a dead server is reported.
func (b *Bucket) openAzure(ctx context.Context, u *url.URL) error {
	svc := azureblob.NewDefaultServiceURLOptions()
	if svc.SASToken != "" {
		// As gocloud: the token in the environment is for its endpoint only.
		for _, k := range []string{"domain", "protocol", "cdn", "localemu"} {
			if u.Query().Has(k) {
				return errors.New("azureblob: bucket URL cannot change the service endpoint when AZURE_STORAGE_SAS_TOKEN is set")
			}
		}
	}
	open := func(retry policy.RetryOptions) (*blob.Bucket, error) {
		o := &azureblob.URLOpener{ServiceURLOptions: *svc, MakeClient: func(svcURL azureblob.ServiceURL, name azureblob.ContainerName) (*container.Client, error) {
			return azureClient(svcURL, name, retry)
		}}
		return o.OpenBucketURL(ctx, u)
	}
	return b.reopen(
		func() (*blob.Bucket, error) { return open(policy.RetryOptions{MaxRetries: -1}) },
		func() (*blob.Bucket, error) {
			return open(policy.RetryOptions{MaxRetries: int32(max(b.Retry.Attempts, 1) - 1), RetryDelay: max(b.Retry.Base, 1), MaxRetryDelay: max(b.Retry.Max, 1)})
		})
}

// azureClient makes a container client with the credentials gocloud's
// azureblob would choose: AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY (a
// shared key), else AZURE_STORAGE_SAS_TOKEN (in the service URL), else
// AZURE_STORAGE_CONNECTION_STRING (or AZURE_STORAGEBLOB_CONNECTIONSTRING),
// else the default Azure credential chain (environment, workload identity,
// managed identity, az CLI).
func azureClient(svcURL azureblob.ServiceURL, name azureblob.ContainerName, retry policy.RetryOptions) (*container.Client, error) {
	opts := &container.ClientOptions{}
	opts.Retry = retry
	opts.Telemetry = policy.TelemetryOptions{ApplicationID: "opm"}
	containerURL, err := url.JoinPath(string(svcURL), string(name))
	if err != nil {
		return nil, err
	}
	account, key := os.Getenv("AZURE_STORAGE_ACCOUNT"), os.Getenv("AZURE_STORAGE_KEY")
	conn := os.Getenv("AZURE_STORAGE_CONNECTION_STRING")
	if conn == "" {
		conn = os.Getenv("AZURE_STORAGEBLOB_CONNECTIONSTRING")
	}
	switch {
	case account != "" && key != "":
		cred, err := azblob.NewSharedKeyCredential(account, key)
		if err != nil {
			return nil, fmt.Errorf("AZURE_STORAGE_KEY: %w", err)
		}
		return container.NewClientWithSharedKeyCredential(containerURL, cred, opts)
	case os.Getenv("AZURE_STORAGE_SAS_TOKEN") != "":
		return container.NewClientWithNoCredential(containerURL, opts)
	case conn != "":
		return container.NewClientFromConnectionString(conn, string(name), opts)
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("no Azure credentials (set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or log in with az): %w", err)
	}
	return container.NewClient(containerURL, cred, opts)
}

// isAzure reports whether rawURL is an azblob:// URL.
func isAzure(rawURL string) bool { return strings.HasPrefix(rawURL, azureblob.Scheme+"://") }
