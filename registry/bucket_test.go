package registry

import (
	"context"

	"gocloud.dev/blob"
)

func openRawBucket(url string) (*blob.Bucket, error) {
	return blob.OpenBucket(context.Background(), url)
}
