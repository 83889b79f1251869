#!/usr/bin/env bash
# Installs everything manimd needs on Debian 12, as root. Idempotent: each step
# checks a stamp (or the real state) first, so a second run takes seconds.
#
# Runtimes go under $MANIMD_RUNTIME (default /opt/manimd): two Python virtual
# environments with pinned engines. They live outside /root and the checkout
# because the sandbox bind-mounts them read-only and must never see either.
set -euo pipefail

RUNTIME="${MANIMD_RUNTIME:-/opt/manimd}"
MANIM_VERSION="0.22.0"
MANIMGL_VERSION="1.7.2"
# The worker's unit tests run with each engine's Python (scripts/test-worker.sh).
PYTEST_VERSION="9.2.0"

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

APT_PACKAGES=(
  # Rendering: encoders, Cairo/Pango (Manim Community builds pycairo and
  # manimpango against them when no wheel fits), the Python that the venvs use.
  ffmpeg libcairo2-dev libpango1.0-dev pkg-config python3-venv python3-dev build-essential
  fontconfig fonts-dejavu-core
  # The sandbox.
  bubblewrap
  # Narration's offline text to speech (runs on the host, outside the sandbox).
  espeak-ng
  # Headless OpenGL for ManimGL: Mesa's software rasterizer behind EGL.
  libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2
  # TeX: `standalone` (Manim Community's template) lives in texlive-latex-extra;
  # ManimGL gets a lighter template (see python/manimd_worker) so that the
  # gigabyte-sized texlive-fonts-extra is not needed.
  texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended dvisvgm
  texlive-science tipa
  # Test and benchmark tools; Chromium for the studio's browser tests.
  sqlite3 procps psmisc time chromium
  # Scale-out: the tests start their own PostgreSQL in a temporary directory.
  postgresql
)

missing_apt() {
  local p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

install_apt() {
  local missing
  missing=$(missing_apt)
  if [ -z "$missing" ]; then
    log "Debian packages: present"
    return
  fi
  log "Debian packages: installing $(echo $missing | wc -w) ($(echo $missing | tr '\n' ' '))"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# make_venv NAME SPEC...: a venv at $RUNTIME/venv/NAME with pinned packages.
# The stamp records the specs it was made with: an interrupted install is
# redone, and a changed list is installed on top of the existing venv.
make_venv() {
  local name=$1; shift
  local dir="$RUNTIME/venv/$name"
  local want="$*"
  if [ -f "$dir/.manimd-complete" ] && [ "$(cat "$dir/.manimd-complete")" = "$want" ]; then
    log "venv $name: present"
    return
  fi
  if [ ! -x "$dir/bin/pip" ]; then
    rm -rf "$dir"
    /usr/bin/python3 -m venv "$dir"
  fi
  log "venv $name: installing $want"
  "$dir/bin/pip" install -q --disable-pip-version-check --no-cache-dir "$@"
  printf '%s' "$want" > "$dir/.manimd-complete"
}

install_rust() {
  if command -v cargo >/dev/null 2>&1; then
    log "Rust: $(cargo --version)"
    return
  fi
  log "Rust: cargo is not on PATH; install rustup's stable toolchain first" >&2
  exit 1
}

install_apt
mkdir -p "$RUNTIME/venv"
make_venv "manim-$MANIM_VERSION" "manim==$MANIM_VERSION" "pytest==$PYTEST_VERSION"
# ManimGL 1.7.2 predates NumPy 2 and setuptools' removal of pkg_resources.
# PyAV (Manim Community brings its own) lets the worker stitch and probe
# videos in-process instead of starting ffmpeg and ffprobe. moderngl is pinned
# because the worker patches it and checks its signature (enginecheck.py).
make_venv "manimgl-$MANIMGL_VERSION" "manimgl==$MANIMGL_VERSION" "numpy<2" "setuptools<70" "av==18.1.0" "moderngl==5.13.0" "pytest==$PYTEST_VERSION"
# Test tooling: schemathesis fuzzes the HTTP API from its OpenAPI document;
# moto's server is the S3-compatible store the storage tests run against.
make_venv "tools" "schemathesis==4.32.5" "moto[server]==5.1.22"
# The web studio's player library, from npm, served by the binary (nothing is
# fetched from a CDN at run time), and playwright-core, which drives Debian's
# Chromium in the browser tests (no browser is downloaded).
HLS_JS_VERSION="1.7.4"
PLAYWRIGHT_VERSION="1.65.1"
install_web() {
  local dir="$RUNTIME/web"
  local want="hls.js@$HLS_JS_VERSION playwright-core@$PLAYWRIGHT_VERSION"
  if [ -f "$dir/node_modules/hls.js/dist/hls.min.js" ] && [ "$(cat "$dir/.manimd-complete" 2>/dev/null)" = "$want" ]; then
    log "web assets: present"
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    log "web assets: installing npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  log "web assets: installing $want"
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  npm install --prefix "$dir" --no-audit --no-fund --silent $want
  printf '%s' "$want" > "$dir/.manimd-complete"
}

install_web
install_rust
log "done"
