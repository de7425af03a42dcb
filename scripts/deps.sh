#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# git (metadata, and the tests' checks), fuse3 (fusermount3 for non-root
# mounts), the real programs the mount's tests run from it: gcc, make,
# rsync, python3 (tar is on every machine), and erofs-utils (its
# fsck.erofs checks the EROFS images opm writes). Go modules come through
# the module proxy on first build.
#
# Arguments add more, as COMMAND:DEBIAN-PACKAGE pairs (scripts/bench-deps.sh).
set -euo pipefail
need=()
for pair in git:git fusermount3:fuse3 rsync:rsync make:make gcc:gcc python3:python3 fsck.erofs:erofs-utils "$@"; do
	command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
((${#need[@]})) || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "please install: ${need[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
