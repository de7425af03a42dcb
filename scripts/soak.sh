#!/usr/bin/env bash
# make soak: the crash tests of make test (integration/crash*_test.go) with
# OPM_SOAK=1, which runs 50 trials of each scenario (SIGKILL of opm push,
# push to an origin, sync, sync SRC DST, gc of a local store and of a bucket,
# and the daemon), each checked by the test's own invariants and by
# opm fsck --read-data. Prints one line per scenario:
#
#   SOAK push: trials=50 killed=… completed=… fsck_clean=… repaired_leftovers=… problems=… …
#
# OPM_CRASH_TRIALS=N runs N trials instead; OPM_CRASH_SEED=S replays the
# seed a SOAK line (or a failure) names. The full log is kept in $SOAK_LOG.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
log=${SOAK_LOG:-${TMPDIR:-/tmp}/opm-soak.log}
start=$(date +%s)
OPM_SOAK=1 OPM_TEST_REQUIRE_FUSE=${OPM_TEST_REQUIRE_FUSE:-0} \
	"$GO" test -count=1 -timeout 90m -v -run '^TestCrash(Push|SyncFollow|SyncMirror|GC|Daemon)$' ./integration/ >"$log" 2>&1
status=$?
echo "soak: $(( $(date +%s) - start ))s, exit $status, log $log"
grep -E '^SOAK ' "$log"
if [ $status -ne 0 ]; then
	grep -E -- '--- FAIL|crash_.*test.go:[0-9]+: .*(trial|seed)' "$log" | head -40
fi
exit $status
