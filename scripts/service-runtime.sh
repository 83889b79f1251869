#!/usr/bin/env bash
# Copies the part of a runtime (scripts/setup.sh's /opt/manimd) that the
# service uses at run time into a new directory: the engines' venvs and the
# studio's three assets (src/runtime.rs, StudioAsset). Left out: the test
# tools' venv, Node and the npm packages, which only the setup and the tests
# use. deploy/Containerfile's setup stage makes its image's runtime with it;
# scripts/container-test.sh, with --link, a build context of hard links to
# this machine's runtime (no copy of its 1.2 GB).
#
#   service-runtime.sh [--link] SRC DST
set -euo pipefail

cp_flags=(-a)
if [ "${1:-}" = --link ]; then
  cp_flags=(-al)
  shift
fi
SRC=$1
DST=$2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ce="manim-$(sed -n 's/^MANIM_VERSION="\(.*\)"$/\1/p' "$ROOT/scripts/setup.sh")"
gl="manimgl-$(sed -n 's/^MANIMGL_VERSION="\(.*\)"$/\1/p' "$ROOT/scripts/setup.sh")"
hls=web/node_modules/hls.js/dist/hls.min.js

for need in "venv/$ce/.manimd-complete" "venv/$gl/.manimd-complete" web/editor.js \
  web/engine-names.json "$hls"; do
  [ -e "$SRC/$need" ] || { echo "service-runtime: $SRC/$need is missing (run scripts/setup.sh)" >&2; exit 1; }
done
mkdir -p "$DST/venv" "$DST/${hls%/*}"
# Hard links only within one file system; across two, a copy.
if [ "${cp_flags[0]}" = -al ] && [ "$(stat -c %d "$SRC")" != "$(stat -c %d "$DST")" ]; then
  cp_flags=(-a)
fi
cp "${cp_flags[@]}" "$SRC/venv/$ce" "$SRC/venv/$gl" "$DST/venv/"
cp "${cp_flags[@]}" "$SRC/web/editor.js" "$SRC/web/engine-names.json" "$DST/web/"
cp "${cp_flags[@]}" "$SRC/$hls" "$DST/$hls"
