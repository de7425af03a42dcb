#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# git (metadata, and the tests' checks), fuse3 (fusermount3 for non-root
# mounts), the real programs the mount's tests run from it: gcc, make,
# rsync, python3 (tar is on every machine), and erofs-utils (its
# fsck.erofs checks the EROFS images opm writes), skopeo (a real client of
# the HTTP server's token flow: skopeo login, copy, inspect, delete; oras,
# crane, regctl and helm, whose login subcommands the tests run too, are
# built from the Go module proxy), chromium (the web pages, rendered
# headless) and openssh-client (ssh-keygen, ssh-agent and ssh-add: signing
# keys for signed commits). Go modules come through the module proxy
# on first build.
#
# Arguments add more, as COMMAND:DEBIAN-PACKAGE pairs (scripts/bench-deps.sh).
# Every command must be there at the end, or it fails naming the missing ones:
# a test that cannot find one may otherwise skip a check (fsck.erofs).
set -euo pipefail
pairs=(git:git fusermount3:fuse3 rsync:rsync make:make gcc:gcc python3:python3 fsck.erofs:erofs-utils skopeo:skopeo chromium:chromium ssh-keygen:openssh-client ssh-agent:openssh-client ssh-add:openssh-client "$@")
missing() {
	local pair
	for pair in "${pairs[@]}"; do
		command -v "${pair%%:*}" >/dev/null || echo "$pair"
	done
}
mapfile -t need < <(missing)
((${#need[@]})) || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "deps: missing commands (COMMAND:DEBIAN-PACKAGE): ${need[*]}; please install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq "${need[@]#*:}" >/dev/null; then
	echo "deps: apt-get install failed for (COMMAND:DEBIAN-PACKAGE): ${need[*]}" >&2
	exit 1
fi
mapfile -t need < <(missing)
if ((${#need[@]})); then
	echo "deps: still missing after apt-get install (COMMAND:DEBIAN-PACKAGE): ${need[*]}" >&2
	exit 1
fi
