#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# git (metadata, and the tests' checks), fuse3 (fusermount3 for non-root
# mounts). Go modules come through the module proxy on first build.
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
command -v fusermount3 >/dev/null || need+=(fuse3)
((${#need[@]})) || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "please install: ${need[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
