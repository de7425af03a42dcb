#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make deps`: squashfs-tools and
# squashfuse (the baseline of the mount benchmarks: squashfuse over a
# squashfs image of the same tree) and rclone (the baseline of the storage
# benchmarks, bench/storage_test.go, which run on the servers `make servers`
# builds); deps.sh itself installs python3, which the interpreter benchmark
# runs.
exec "$(dirname "$0")/deps.sh" mksquashfs:squashfs-tools squashfuse:squashfuse rclone:rclone
