#!/usr/bin/env bash
# Detaches the opm mounts a killed test run left under the temporary
# directory (${TMPDIR:-/tmp}, where the tests' directories are), so that they
# cannot hang the next run, and says how many. make test and make stress run
# it first.
#
# An opm mount is a FUSE mount of type fuse.opm whose source is opm:<home>
# (/proc/self/mountinfo); the kernel overlays the daemon puts on packages sit
# below it. A mount is left over when nothing serves it any more: its daemon
# (or test binary) was killed, so the kernel answers "Transport endpoint is
# not connected", or it does not answer within 5 seconds. A mount that
# answers belongs to a test running right now (on a shared machine, perhaps
# someone else's) and is left alone unless CLEAN_MOUNTS_ALL=1. Each left-over
# mount is detached with the overlays below it, deepest first, with
# umount -l (fusermount3 -uz for a FUSE mount if that fails, as non-root); an
# overlay that cannot be reached through a dead mount goes with it, and below
# a mount that does not answer only that mount is named (a path through it
# would wait for its server for ever).
set -uo pipefail
tmp=$(realpath -m -- "${TMPDIR:-/tmp}")
all=${CLEAN_MOUNTS_ALL:-0}

# mounts prints "KIND<tab>POINT" for the opm mounts and overlays under $tmp.
# mountinfo: "id parent dev root POINT options... - FSTYPE SOURCE superoptions",
# with space, tab, newline and backslash in POINT and SOURCE as \ooo.
mounts() {
	local f i point fstype source
	while read -r -a f; do
		for ((i = 6; i < ${#f[@]}; i++)); do [ "${f[i]}" = - ] && break; done
		point=$(printf '%b' "${f[4]//\\/\\0}") fstype=${f[i + 1]:-} source=${f[i + 2]:-}
		case $point in "$tmp"/*) ;; *) continue ;; esac
		if [ "$fstype" = fuse.opm ] && [[ $source == opm:* ]]; then
			printf 'opm\t%s\n' "$point"
		elif [ "$fstype" = overlay ]; then
			printf 'overlay\t%s\n' "$point"
		fi
	done </proc/self/mountinfo
}

declare -A kind hung
stale=() live=0
while IFS=$'\t' read -r k point; do
	kind[$point]=$k
	[ "$k" = opm ] || continue
	out=$(LC_ALL=C timeout -s KILL 5 stat -f -c %T -- "$point" 2>&1)
	case $?:$out in
	0:*) if [ "$all" = 1 ]; then stale+=("$point"); else live=$((live + 1)); fi ;;
	137:*)
		echo "clean-mounts: $point does not answer" >&2
		stale+=("$point") hung[$point]=1
		;;
	*"not connected"*) stale+=("$point") ;;
	*) ;; # gone meanwhile (a test ending), or not ours to judge
	esac
done < <(mounts)

# The stale mounts and the overlays below them, deepest first.
targets=()
for point in "${stale[@]}"; do
	targets+=("$point")
	[ -z "${hung[$point]:-}" ] || continue
	for p in "${!kind[@]}"; do
		case $p in "$point"/*) targets+=("$p") ;; esac
	done
done
# -c: umount(8) must not stat the path (a dead mount's server never answers).
detach() {
	timeout -s KILL 10 umount -l -c -- "$1" 2>/dev/null ||
		{ [ "${kind[$1]}" = opm ] && timeout -s KILL 10 fusermount3 -uz -- "$1" 2>/dev/null; }
}
while IFS=$'\t' read -r _ point; do
	detach "$point"
done < <(for p in "${targets[@]}"; do
	d=${p//[^\/]/}
	printf '%d\t%s\n' "${#d}" "$p"
done | sort -u -t $'\t' -k1,1nr -k2,2)

# Count what is gone now, of the stale mounts and the overlays below them.
declare -A left n=([opm]=0 [overlay]=0)
while IFS=$'\t' read -r _ point; do left[$point]=1; done < <(mounts)
failed=()
for p in "${!kind[@]}"; do
	below=
	for point in "${stale[@]}"; do
		case $p in "$point" | "$point"/*) below=1 ;; esac
	done
	if [ -z "$below" ]; then
		continue
	elif [ -n "${left[$p]:-}" ]; then
		failed+=("$p")
	else
		n[${kind[$p]}]=$((n[${kind[$p]}] + 1))
	fi
done
msg="clean-mounts: detached ${n[opm]} left-over opm mounts under $tmp (and ${n[overlay]} overlays on them)"
((live)) && msg+="; left $live that answer (a test running now; CLEAN_MOUNTS_ALL=1 detaches them too)"
echo "$msg"
if ((${#failed[@]})); then
	echo "clean-mounts: could not detach: ${failed[*]}" >&2
fi
exit 0
