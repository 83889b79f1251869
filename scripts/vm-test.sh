#!/usr/bin/env bash
# Checks the sandbox on a real cgroup v2 kernel. The development machines are
# cgroup v1 (hybrid), so this boots Debian's own kernel (linux-image-amd64) in
# QEMU with virtme-ng, on this machine's filesystem (read-only, over 9p), with
# cgroup_no_v1=all, and runs scripts/vm-guest.sh there as root: renders in
# both engines, the memory, process and wall-clock caps, a systemd-style
# delegated group (Delegate=yes) whose memory.max bounds the renders, a
# graceful stop of `manimd serve` in it, and that nothing is left behind.
#
#   scripts/vm-test.sh          the full set (every check above)
#   scripts/vm-test.sh quick    what CI runs: one render, the memory and
#                               process caps, the delegated group, cleanup
#
# Installs what it needs first (`scripts/setup.sh vm`) and builds the debug
# binary. KVM is used only when MANIMD_VM_KVM=1: where /dev/kvm boots only
# patched kernels (as on the machines here), the VM runs under QEMU's
# software emulation (TCG), which is slow: README.md gives the times.
set -euo pipefail

MODE="${1:-full}"
case "$MODE" in
  quick | full) ;;
  *)
    echo "usage: scripts/vm-test.sh [quick|full]" >&2
    exit 2
    ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNTIME="${MANIMD_RUNTIME:-/opt/manimd}"
cd "$ROOT"

bash scripts/setup.sh vm
cargo build --quiet
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/manimd"
KERNEL=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' | sort -V | tail -n 1)
[ -n "$KERNEL" ] || { echo "vm-test: no Debian kernel in /boot (scripts/setup.sh vm installs it)" >&2; exit 1; }

# Shared read-write with the guest, for its result line.
WORK=$(mktemp -d /var/tmp/manimd-vm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
accel=(--disable-kvm)
[ "${MANIMD_VM_KVM:-0}" = 1 ] && accel=()

echo "vm-test: booting $KERNEL ($MODE; ${accel[*]:-KVM})"
start=$(date +%s)
# virtme-ng's initramfs needs busybox; the guest sees this machine's / and
# $RUNTIME read-only, and $WORK read-write. 3 GiB: the memory checks stay
# under it, so the cgroups stop them, not the guest's own OOM.
# Through a pipe: QEMU opens our stdout anew for each of the guest's streams,
# and on a file each would write at its own offset, over the others.
status=0
PATH="$RUNTIME/venv/vm/bin:$PATH" timeout 3000 vng \
  --run "$KERNEL" "${accel[@]}" --cpus 2 --memory 3G \
  --append "cgroup_no_v1=all" --rwdir "$WORK" \
  --exec "MANIMD_RUNTIME=$RUNTIME bash $ROOT/scripts/vm-guest.sh $MODE $BIN $WORK" \
  </dev/null 2>&1 | cat || status=$?
echo "vm-test: the VM ran $(($(date +%s) - start)) s (exit $status)"

if [ ! -s "$WORK/result" ]; then
  echo "vm-test: the guest wrote no result" >&2
  exit 1
fi
result=$(cat "$WORK/result")
echo "${result/vm-guest/vm-test}"
grep -q ' 0 failed$' <<<"$result"
