#!/usr/bin/env bash
# Installs everything manimd needs on Debian 12, as root. Idempotent: each step
# checks a stamp (or the real state) first, so a second run takes seconds.
#
# Runtimes go under $MANIMD_RUNTIME (default /opt/manimd): Python virtual
# environments (the two engines and the test tools), each installed from its
# hash-locked python/locks/NAME.txt. They live outside /root and the checkout
# because the sandbox bind-mounts them read-only and must never see either.
set -euo pipefail

RUNTIME="${MANIMD_RUNTIME:-/opt/manimd}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCKS="$ROOT/python/locks"
MANIM_VERSION="0.22.0"
MANIMGL_VERSION="1.7.2"

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

APT_PACKAGES=(
  # Rendering: encoders, Cairo/Pango (pycairo and manimpango have no wheel for
  # CPython 3.11 on Linux and are built against them), the Python of the venvs.
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
  log "Debian packages: installing $(wc -w <<<"$missing") ($(tr '\n' ' ' <<<"$missing"))"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# make_venv NAME [build]: a venv at $RUNTIME/venv/NAME holding exactly
# python/locks/NAME.txt, every transitive dependency pinned with its hashes
# (scripts/lock.sh regenerates the locks), so an upstream release never changes
# what is installed. With `build`, python/locks/build.txt (the build tools of
# the locked packages that have no wheel here: pycairo, manimpango) goes in
# first, and those packages are built against it without build isolation:
# nothing unlocked is fetched, not even to build. The stamp holds the locks'
# sha256: an interrupted install is redone, and a changed lock is installed
# over the existing venv, whose packages that the lock no longer names are
# then removed.
make_venv() {
  local name=$1 build=${2:-}
  local dir="$RUNTIME/venv/$name"
  local locks=("$LOCKS/$name.txt")
  [ -n "$build" ] && locks=("$LOCKS/build.txt" "${locks[@]}")
  local want
  want="lock sha256 $(cat "${locks[@]}" | sha256sum | cut -d' ' -f1)"
  if [ -f "$dir/.manimd-complete" ] && [ "$(cat "$dir/.manimd-complete")" = "$want" ]; then
    log "venv $name: present"
    return
  fi
  if [ ! -x "$dir/bin/pip" ]; then
    rm -rf "$dir"
    /usr/bin/python3 -m venv "$dir"
  fi
  rm -f "$dir/.manimd-complete"
  log "venv $name: installing ${locks[*]#"$ROOT/"}"
  local lock
  for lock in "${locks[@]}"; do
    # The venv's bin first on PATH: meson-python finds the locked ninja there.
    PATH="$dir/bin:$PATH" "$dir/bin/pip" install -q --disable-pip-version-check --no-cache-dir \
      --require-hashes --no-deps --no-build-isolation -r "$lock"
  done
  remove_unlocked "$dir" "${locks[@]}"
  "$dir/bin/pip" check -q >/dev/null || { "$dir/bin/pip" check >&2; exit 1; }
  printf '%s' "$want" > "$dir/.manimd-complete"
}

# remove_unlocked DIR LOCK...: uninstalls what the venv holds beyond the locks
# (pip freeze leaves out the venv's own pip and setuptools).
remove_unlocked() {
  local dir=$1; shift
  local extra
  extra=$(comm -23 \
    <("$dir/bin/pip" freeze --disable-pip-version-check | sed -n 's/==.*//p' | normalize) \
    <(sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*\)==.*/\1/p' "$@" | normalize))
  if [ -n "$extra" ]; then
    log "venv ${dir##*/}: removing what the lock no longer names: $(echo "$extra" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    "$dir/bin/pip" uninstall -q -y --disable-pip-version-check $extra
  fi
}

# Python package names compared as PEP 503 normalizes them, one a line, sorted.
normalize() { tr '[:upper:]' '[:lower:]' | sed 's/[-_.]\{1,\}/-/g' | sort -u; }

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
# Each venv is its lock, python/locks/NAME.txt; its top-level constraints are
# in NAME.in beside it (why each pin), and scripts/lock.sh resolves them.
make_venv "manim-$MANIM_VERSION" build
make_venv "manimgl-$MANIMGL_VERSION" build
# Test tooling: schemathesis and moto's S3 server. All wheels, no build.
make_venv "tools"
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
