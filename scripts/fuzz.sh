#!/usr/bin/env bash
# Fuzzes the parsers of what the sandbox writes (the MP4 reader behind live
# playback, the worker protocol) for SECONDS each (default 60), with
# libFuzzer through cargo-fuzz. Exits non-zero when a target crashes: a
# panic, an overflow, a timeout or an allocation past the limit. The input
# that did it is left in fuzz/artifacts/TARGET/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${1:-60}"
CARGO_FUZZ_VERSION="0.13.2"
TARGETS=(mp4_read worker_event)

log() { printf '\033[1mfuzz:\033[0m %s\n' "$*"; }

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address and friends);
# the stable toolchain accepts them with this set.
export RUSTC_BOOTSTRAP=1

# Where each target starts besides its own growing corpus.
seeds() {
  case "$1" in
    mp4_read) echo tests/fixtures/mp4 ;;
    *) echo "fuzz/seeds/$1" ;;
  esac
}

start=$(date +%s)
for target in "${TARGETS[@]}"; do
  log "building $target"
  cargo fuzz build "$target"
done
log "built in $(($(date +%s) - start)) s"

for target in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  log "running $target for ${SECONDS_EACH} s"
  # -max_len: the fixtures are larger than libFuzzer's default 4 KiB.
  # -timeout: an input that takes seconds is a hang the sandbox could cause.
  cargo fuzz run "$target" "$corpus" "$(seeds "$target")" -- \
    -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10
done
log "done in $(($(date +%s) - start)) s, no crash"
