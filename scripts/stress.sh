#!/usr/bin/env bash
# make stress: the packages whose tests race the clock (mounts, the daemon,
# the store and the end-to-end tests) for several rounds while other
# CPU-bound work competes for the cores, to shake out tests that pass only on
# an idle machine. Each round is
#
#   go test -count=1 -cpu 1,2 -timeout $STRESS_TIMEOUT $STRESS_FLAGS $STRESS_PKGS
#
# summarised by testsum (bin/testsum, internal/cmd/testsum); meanwhile
# $STRESS_LOAD busy loops run beside it. At the end it prints how many rounds
# failed each test, and exits 1 if any round failed. The load stops with the
# script, however it ends (each loop also stops by itself once the script is
# gone). Logs, JSON and goroutine dumps: $STRESS_LOGS/stress-N.*.
#
#   STRESS_ROUNDS (5)  STRESS_LOAD (2)  STRESS_CPU (1,2)  STRESS_TIMEOUT (30m)
#   STRESS_PKGS (./integration/ ./fs/ ./daemon/ ./cas/... ./server/)  STRESS_FLAGS ()
#   STRESS_LOGS (bin/testlogs)
set -uo pipefail
cd "$(dirname "$0")/.." || exit
GO=${GO:-go}
rounds=${STRESS_ROUNDS:-5}
load=${STRESS_LOAD:-2}
read -r -a pkgs <<<"${STRESS_PKGS:-./integration/ ./fs/ ./daemon/ ./cas/... ./server/}"
read -r -a flags <<<"${STRESS_FLAGS:-}"
logs=${STRESS_LOGS:-bin/testlogs}
testsum=bin/testsum

step() { printf '\n==> [%s] stress: %s\n' "$(date +%T)" "$*"; }

loadpids=()
stop_load() {
	((${#loadpids[@]})) || return 0
	kill "${loadpids[@]}" 2>/dev/null
	wait "${loadpids[@]}" 2>/dev/null
	loadpids=()
}
trap stop_load EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$GO" build -o "$testsum" ./internal/cmd/testsum || exit
./scripts/clean-mounts.sh

step "$load busy loops competing for $(nproc) cores"
me=$$
for ((i = 0; i < load; i++)); do
	# CPU-bound shell work; it checks now and then that the script lives.
	(
		trap - EXIT TERM
		trap '' INT # a ^C stops the script, which stops the loops
		while kill -0 "$me" 2>/dev/null; do
			for ((j = 0; j < 100000; j++)); do :; done
		done
	) &
	loadpids+=($!)
done

failed=0 runs=()
for ((r = 1; r <= rounds; r++)); do
	step "round $r of $rounds: ${pkgs[*]}"
	"$testsum" -name "stress-$r" -dir "$logs" -- \
		"$GO" test -json -count=1 -cpu "${STRESS_CPU:-1,2}" -timeout "${STRESS_TIMEOUT:-30m}" "${flags[@]}" "${pkgs[@]}"
	status=$?
	runs+=("$logs/stress-$r.json")
	if ((status)); then
		failed=$((failed + 1))
		./scripts/clean-mounts.sh # what a failed round left must not hang the next one
	fi
done
stop_load

step "$failed of $rounds rounds failed"
"$testsum" -tally "${runs[@]}"
((failed == 0))
