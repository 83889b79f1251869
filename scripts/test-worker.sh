#!/usr/bin/env bash
# The Python worker's unit tests (python/tests), run with each engine's own
# venv Python, as the sandbox runs the worker: tests for the other engine
# skip. Exits non-zero when either run fails or a venv is missing.
# Extra arguments go to pytest (e.g. -k check, -x).
set -uo pipefail

RUNTIME="${MANIMD_RUNTIME:-/opt/manimd}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The engines' pinned versions, as setup.sh installs them.
version() { sed -n "s/^$1=\"\(.*\)\"$/\1/p" "$ROOT/scripts/setup.sh"; }
VENVS=("manim-$(version MANIM_VERSION)" "manimgl-$(version MANIMGL_VERSION)")

status=0
for venv in "${VENVS[@]}"; do
  python="$RUNTIME/venv/$venv/bin/python"
  if [ ! -f "$RUNTIME/venv/$venv/.manimd-complete" ] || [ ! -x "$python" ]; then
    echo "test-worker: $RUNTIME/venv/$venv is missing or incomplete (run scripts/setup.sh)" >&2
    status=1
    continue
  fi
  echo "test-worker: $venv"
  # No cache directory: nothing written into the checkout but bytecode.
  if ! (cd "$ROOT" && "$python" -m pytest -p no:cacheprovider -q python/tests "$@"); then
    status=1
  fi
done
exit $status
