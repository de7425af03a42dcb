#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# git (metadata, and the tests' checks), fuse3 (fusermount3 for non-root
# mounts), and the real programs the mount's tests run from it: gcc, make,
# rsync (python3 and tar are on every machine). Go modules come through the
# module proxy on first build.
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v rsync >/dev/null || need+=(rsync)
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
((${#need[@]})) || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "please install: ${need[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
