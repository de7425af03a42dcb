#!/usr/bin/env bash
# The embedded default in one go: a local registry, no servers.
set -euo pipefail
opm=$(realpath "${1:-bin/opm}")
export OPM_HOME=$(mktemp -d /tmp/opm-demo.XXXXXX)/home
work=$(dirname "$OPM_HOME")
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

mkdir -p "$work/site/css" "$work/tool"
echo '<h1>hello from opm</h1>' > "$work/site/index.html"
echo 'h1 { color: teal }' > "$work/site/css/site.css"
cp "$opm" "$work/tool/opm"
cp README.md "$work/tool/README.md"

cd "$work"
run "$opm" init
run "$opm" push demo/web/site:v1 site
echo '<h1>hello again</h1>' > site/index.html
run "$opm" push demo/web/site:v2 site
run "$opm" tag demo/web/site:v2 demo/web/site:stable
run "$opm" push demo/tools/opm:latest tool --annotation org.opencontainers.image.description="opm itself"
run "$opm" ls
run "$opm" ls demo/web/site
run "$opm" files demo/tools/opm:latest
run "$opm" pull demo/web/site:stable -o pulled
run cat pulled/index.html
run "$opm" log
run git -C "$OPM_HOME/meta.git" log --stat --format='%h %s%n%b' -3

# The registry as a filesystem: the daemon owns the home while mounted, and
# the CLI commands above would be carried out by it.
if [ -e /dev/fuse ]; then
  mnt="$work/mnt"
  mkdir -p "$mnt"
  trap '"$opm" umount "$mnt" 2>/dev/null || true' EXIT
  run "$opm" mount --daemon "$mnt"
  cd "$mnt"
  run ls
  run ls -l demo/web/site
  run cat demo/web/site/stable/index.html
  run sha256sum demo/tools/opm/latest/README.md
  run "$opm" files demo/tools/opm:latest
  run find demo -maxdepth 4
  run cat .opm/status
  cd "$work"
  run "$opm" umount "$mnt"
  trap - EXIT
else
  printf '\n(no /dev/fuse here: skipping the mount)\n'
fi
printf '\nThe demo registry is in %s (OPM_HOME=%s).\n' "$work" "$OPM_HOME"
