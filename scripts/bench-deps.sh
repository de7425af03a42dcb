#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make deps`: squashfs-tools and
# squashfuse (the baseline of the mount benchmarks: squashfuse over a
# squashfs image of the same tree) and python3 (the interpreter benchmark).
exec "$(dirname "$0")/deps.sh" mksquashfs:squashfs-tools squashfuse:squashfuse python3:python3
