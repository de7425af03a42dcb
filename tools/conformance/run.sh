#!/bin/sh
# Runs the OCI distribution-spec conformance suite (pull, push, content
# discovery, content management) against `opm serve` on a free loopback port
# with a temporary home, then stops the server. Usage: run.sh path/to/opm
#
# The suite is a Go test package fetched from the Go module proxy; this
# directory is its own module so that opm's go.mod does not carry ginkgo and
# friends. Results (junit.xml, report.html) go to $OCI_REPORT_DIR if set.
set -eu
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

(cd "$here" && go test -c -o "$tmp/conformance.test" github.com/opencontainers/distribution-spec/conformance)
(cd "$here/latest" && go build -o "$tmp/conformance-latest" github.com/opencontainers/distribution-spec/conformance)

token=conformance-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
printf '%s\n' "$token" >"$tmp/token"
OPM_HOME="$tmp/home" GIT_AUTHOR_NAME=conformance GIT_AUTHOR_EMAIL=conformance@localhost \
	"$bin" serve --addr 127.0.0.1:0 --token-file "$tmp/token" 2>"$tmp/serve.log" &
pid=$!
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's#.* on http://\([^/]*\)/.*#\1#p' "$tmp/serve.log")
	[ -n "$addr" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log" >&2; exit 1; }
	sleep 0.1
done
[ -n "$addr" ] || { echo "opm serve did not start" >&2; cat "$tmp/serve.log" >&2; exit 1; }

reports=${OCI_REPORT_DIR:-$tmp}
mkdir -p "$reports"
status=0
(cd "$tmp" && env OCI_ROOT_URL="http://$addr" \
	OCI_NAMESPACE=conformance/test/repo \
	OCI_CROSSMOUNT_NAMESPACE=conformance/test/mount \
	OCI_USERNAME=opm OCI_PASSWORD="$token" \
	OCI_TEST_PULL=1 OCI_TEST_PUSH=1 \
	OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 \
	OCI_HIDE_SKIPPED_WORKFLOWS=1 OCI_REPORT_DIR="$reports" \
	./conformance.test -test.timeout 5m >"$tmp/conformance.out" 2>&1) || status=$?
# The suite's summary and any failure, without colour codes.
echo "distribution-spec conformance v1.1 (pull, push, content discovery, content management):"
sed 's/\x1b\[[0-9;]*m//g' "$tmp/conformance.out" | grep -E '^\s*\[FAIL\]|Passed|^(ok|FAIL|PASS)' || true
if [ "$status" -ne 0 ]; then
	sed 's/\x1b\[[0-9;]*m//g' "$tmp/conformance.out" | tail -80 >&2
fi

# The current conformance program: every API and data shape (with upload
# cancel and ?tag= on a push by digest), except content addressed by sha512:
# opm stores sha256 only.
latest=0
(cd "$tmp" && env OCI_REGISTRY="$addr" OCI_TLS=disabled \
	OCI_REPO1=conformance/latest/repo1 OCI_REPO2=conformance/latest/repo2 \
	OCI_USERNAME=opm OCI_PASSWORD="$token" \
	OCI_DATA_SHA512=false OCI_API_BLOBS_UPLOAD_CANCEL=true OCI_API_MANIFESTS_TAG_PARAM=true \
	OCI_RESULTS_DIR="$reports/latest" \
	./conformance-latest >"$tmp/latest.out" 2>&1) || latest=$?
echo "distribution-spec conformance (current): $(grep -c 'OCI Conformance Test/.*: *Pass$' "$tmp/latest.out") checks passed, $(grep -c 'OCI Conformance Test/.*: *FAIL$' "$tmp/latest.out") failed"
if [ "$latest" -ne 0 ]; then
	grep -E 'level=WARN|FAIL' "$tmp/latest.out" | head -60 >&2
	status=$latest
fi
if [ "$status" -ne 0 ]; then
	echo "--- opm serve log" >&2
	cat "$tmp/serve.log" >&2
fi
exit "$status"
