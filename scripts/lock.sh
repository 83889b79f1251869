#!/usr/bin/env bash
# Regenerates the hash-locked requirements of every venv that setup.sh makes:
# python/locks/NAME.in (the top-level constraints, edited by hand) resolves to
# python/locks/NAME.txt (every transitive dependency pinned, with the sha256 of
# each of that version's files), for CPython 3.11 on Linux x86_64 (Debian 12).
# build.txt locks the build requirements of the packages that have no wheel
# there (pycairo, manimpango: setup.sh builds them without build isolation).
#
#   scripts/lock.sh                      keep existing pins where the .in allows
#   scripts/lock.sh --upgrade            move everything to the newest allowed
#   scripts/lock.sh --upgrade-package X  move X only
#
# The resolver is uv, pinned, in a throwaway venv ($LOCKGEN, default
# /tmp/manimd-lockgen); nothing is installed into the runtime.
set -euo pipefail

UV_VERSION="0.13.8"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCKGEN="${LOCKGEN:-/tmp/manimd-lockgen}"

if [ "$("$LOCKGEN/bin/uv" --version 2>/dev/null)" != "uv $UV_VERSION" ]; then
  rm -rf "$LOCKGEN"
  /usr/bin/python3 -m venv "$LOCKGEN"
  "$LOCKGEN/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
fi

cd "$ROOT/python/locks"
for input in *.in; do
  name="${input%.in}"
  echo "lock: $name"
  # NAME.overrides replaces a dependency's declared bounds (a plugin that
  # pins an older engine but works with ours; each says why).
  overrides=()
  if [ -f "$name.overrides" ]; then overrides=(--override "$name.overrides"); fi
  "$LOCKGEN/bin/uv" pip compile --quiet --no-cache --generate-hashes \
    --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
    --custom-compile-command "scripts/lock.sh" \
    "${overrides[@]}" "$@" "$input" -o "$name.txt"
done
