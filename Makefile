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
# Where make test and make stress keep each go test run's whole output
# (NAME.log), its JSON (NAME.json) and, for a test binary that panicked or
# timed out, everything from the panic on (NAME.PACKAGE.dump).
TESTLOGS ?= bin/testlogs
TESTSUM := bin/testsum -dir $(TESTLOGS)
STRESS_ROUNDS ?= 5
STRESS_PKGS ?= ./integration/ ./fs/ ./daemon/ ./cas/... ./server/
# The heading of a step of a long target: "==> [12:00:00] test 4/7: go test".
step = printf '\n==> [%s] %s\n' "$$(date +%T)" '$(1)'

.PHONY: all deps servers build test fuzz bench demo lint clean conformance soak stress

all: build

deps:
	@./scripts/deps.sh

# The storage servers the tests run on loopback (SeaweedFS for S3,
# fake-gcs-server for GCS, Azurite for Azure), into bin/servers; the first
# run builds SeaweedFS (a few minutes), later runs cost nothing.
servers:
	@./scripts/storage-servers.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/opm

# Unit, end-to-end (real binary, real git, real storage servers on
# loopback, real FUSE mounts), crash and concurrency tests, then a short run
# of every fuzz target; each step announced with a "==>" line. It first
# detaches the opm mounts a killed run left under ${TMPDIR:-/tmp}, which
# could hang this one (scripts/clean-mounts.sh). The go test runs go through
# testsum (internal/cmd/testsum): as they go it prints each package's
# ok/FAIL line and the output of failed tests; at the end, every failed test
# with its messages, and the head of the goroutine dump of a test binary
# that timed out or panicked (kept whole in $(TESTLOGS)), so that the last
# lines of a failed run name the cause.
test:
	@$(call step,test 1/7: detach left-over mounts)
	./scripts/clean-mounts.sh
	@$(call step,test 2/7: deps and storage servers)
	@$(MAKE) --no-print-directory deps servers
	@$(call step,test 3/7: lint)
	@$(MAKE) --no-print-directory lint
	@$(call step,test 4/7: go test ./...)
	$(GO) build -o bin/testsum ./internal/cmd/testsum
	$(TESTSUM) -name test -- $(GO) test -json -count=1 -timeout 12m ./...
	@$(call step,test 5/7: go test -race)
	$(TESTSUM) -name race -- $(GO) test -json -count=1 -race -timeout 8m ./cas/... ./gitmeta/... ./fs/... ./daemon/...
	@$(call step,test 6/7: conformance)
	@$(MAKE) --no-print-directory conformance
	@$(call step,test 7/7: fuzz)
	@$(MAKE) --no-print-directory fuzz
	@$(call step,test: all 7 steps passed)

# Stress: the tests that race the clock (mounts, the daemon, the store, the
# HTTP server's limits, end to end: STRESS_PKGS) for STRESS_ROUNDS rounds with -cpu 1,2 while two
# busy loops compete for the cores, so that a test passing only on an idle
# machine fails here first; then how many rounds failed each test. Fails if
# any round did. See scripts/stress.sh (STRESS_LOAD, STRESS_TIMEOUT,
# STRESS_FLAGS, e.g. STRESS_FLAGS='-run TestMount').
stress: deps servers
	STRESS_ROUNDS=$(STRESS_ROUNDS) STRESS_PKGS='$(STRESS_PKGS)' STRESS_LOGS=$(TESTLOGS) GO=$(GO) ./scripts/stress.sh

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
bench: deps servers
	@./scripts/bench-deps.sh
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 90m ./bench/ >bench/last.txt 2>&1; \
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
