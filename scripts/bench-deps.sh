#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make deps`: squashfs-tools and
# squashfuse (the baseline of the mount benchmarks: squashfuse over a
# squashfs image of the same tree), erofs-utils (mkfs.erofs, for the
# metadata-image comparison) and python3 (the interpreter benchmark).
set -euo pipefail
need=()
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v squashfuse >/dev/null || need+=(squashfuse)
command -v mkfs.erofs >/dev/null || need+=(erofs-utils)
command -v python3 >/dev/null || need+=(python3)
((${#need[@]})) || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "please install: ${need[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
