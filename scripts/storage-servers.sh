#!/usr/bin/env bash
# Installs the storage servers the tests run on loopback, into bin/servers/
# (cached by version: a second run costs nothing):
#
#   weed             SeaweedFS, the S3-protocol server (Go module
#                    github.com/seaweedfs/seaweedfs; its go.mod has a replace
#                    directive, so `go install` refuses it and it is built from
#                    the module's own folder: about 3.5 minutes on 2 cores)
#   fake-gcs-server  the Google Cloud Storage emulator (Go module
#                    github.com/fsouza/fake-gcs-server)
#   azurite-blob     Azurite, the Azure Blob Storage emulator (npm package
#                    azurite, pinned by tools/azurite/package-lock.json; needs
#                    Node and npm)
#
# The tests find them there (cas/castest/servers.go); with
# OPM_TEST_REQUIRE_FUSE=1, as in CI, a missing one fails its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
FAKE_GCS_VERSION=v1.56.1
GO=${GO:-go}
out=$PWD/bin/servers
mkdir -p "$out"

stamp() { [ -x "$out/$1" ] && [ "$(cat "$out/$1.version" 2>/dev/null)" = "$2" ]; }

if ! stamp weed "$SEAWEEDFS_VERSION"; then
	echo "storage-servers: building SeaweedFS $SEAWEEDFS_VERSION (a few minutes, once)" >&2
	dir=$($GO mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -d "$dir" ] || { echo "storage-servers: no module folder for SeaweedFS" >&2; exit 1; }
	(cd "$dir" && $GO build -o "$out/weed.tmp" ./weed)
	mv "$out/weed.tmp" "$out/weed"
	echo "$SEAWEEDFS_VERSION" >"$out/weed.version"
fi

if ! stamp fake-gcs-server "$FAKE_GCS_VERSION"; then
	echo "storage-servers: installing fake-gcs-server $FAKE_GCS_VERSION" >&2
	GOBIN=$out $GO install "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION"
	echo "$FAKE_GCS_VERSION" >"$out/fake-gcs-server.version"
fi

lock=$(sha256sum tools/azurite/package-lock.json | cut -d' ' -f1)
if ! stamp azurite-blob "$lock"; then
	command -v npm >/dev/null || { echo "storage-servers: Azurite needs Node and npm" >&2; exit 1; }
	echo "storage-servers: installing Azurite (npm ci in tools/azurite)" >&2
	(cd tools/azurite && npm ci --silent --no-audit --no-fund >/dev/null)
	ln -sf ../../tools/azurite/node_modules/.bin/azurite-blob "$out/azurite-blob"
	echo "$lock" >"$out/azurite-blob.version"
fi
