# opm — make targets. `make demo` and `make test` do all set-up on a fresh machine.
GO      ?= go
BIN     := bin/opm
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Fuzz by input count, not by time: a -fuzztime duration can end while the
# engine is minimizing and then fails with "context deadline exceeded".
FUZZTIME ?= 150000x
FUZZTIME_HTTP ?= 20000x
# Targets that touch the filesystem (a real pull per input) run fewer inputs.
FUZZTIME_FS ?= 10000x

.PHONY: all deps build test fuzz bench demo lint clean conformance soak

all: build

deps:
	@./scripts/deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/opm

# Unit, end-to-end (real binary, real git, real S3-protocol server on
# loopback, real FUSE mounts), crash and concurrency tests, then a short run
# of every fuzz target.
test: deps lint
	$(GO) test -count=1 -timeout 12m ./...
	$(GO) test -count=1 -race -timeout 8m ./cas/... ./gitmeta/... ./fs/... ./daemon/...
	$(MAKE) conformance
	$(MAKE) fuzz

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseReference$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzManifestRoundTrip$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzParseAnyManifest$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzPullPaths$$' -fuzztime $(FUZZTIME_FS) ./registry/
	$(GO) test -run '^$$' -fuzz '^FuzzMountTree$$' -fuzztime $(FUZZTIME) ./fs/
	$(GO) test -run '^$$' -fuzz '^FuzzRequests$$' -fuzztime $(FUZZTIME_HTTP) ./server/

# The OCI distribution-spec conformance suite (pull, push, content discovery,
# content management; fetched from the Go module proxy into its own module,
# tools/conformance) against `opm serve` on a free loopback port with a
# temporary home; then the current conformance program (tools/conformance/latest).
# Takes about 15 seconds.
conformance: build
	./tools/conformance/run.sh $(BIN)

# Benchmarks: each reports a ratio against a baseline run alongside it.
bench: deps
	@./scripts/bench-deps.sh
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench/ >bench/last.txt 2>&1; \
		status=$$?; cat bench/last.txt; exit $$status

# Crash soak: the crash tests of make test with 50 trials per scenario
# (SIGKILL of push, sync, sync SRC DST, gc and the daemon, each followed by
# the invariant checks and opm fsck --read-data); one SOAK line per
# scenario. See scripts/soak.sh.
soak: deps
	./scripts/soak.sh

# Builds opm, pushes sample packages into a temporary home, lists them,
# pulls one and shows the git history.
demo: deps build
	./scripts/demo.sh $(BIN)

# gofmt, go vet, and staticcheck (honnef.co/go/tools, pinned in its own
# module, tools/lint, and built from the Go module proxy).
lint:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	cd tools/lint && $(GO) build -o ../../bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	./bin/staticcheck ./...

clean:
	rm -rf bin
