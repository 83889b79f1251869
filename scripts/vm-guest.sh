#!/usr/bin/env bash
# The checks that scripts/vm-test.sh runs inside its VM: a stock Debian
# kernel booted with cgroup_no_v1=all (a pure cgroup v2 hierarchy) on this
# machine's own filesystem, read-only. Runs as root in the VM's root cgroup.
#
#   vm-guest.sh MODE MANIMD WORK
#
# MODE is `quick` (what CI runs) or `full`; MANIMD the binary to test; WORK a
# directory shared with the host, where the log and the result line go.
# Each check prints `ok NAME (SECONDS s)` or `FAIL NAME`, and the last line is
# `vm-guest: N passed, M failed`.
set -uo pipefail

MODE=$1
BIN=$2
WORK=$3
CG=/sys/fs/cgroup
UNIT=$CG/test.slice/manimd.service
export MANIMD_RUNTIME="${MANIMD_RUNTIME:-/opt/manimd}"
DATA=$(mktemp -d /tmp/manimd-data.XXXXXX)
# The sandbox's user must reach the data dir (doctor's "sandbox user's access").
chmod 755 "$DATA"
SCENES=$(mktemp -d /tmp/manimd-scenes.XXXXXX)
OUT=$(mktemp -d /tmp/manimd-out.XXXXXX)
passed=0
failed=0

# check NAME COMMAND...: runs a check, timing it.
check() {
  local name=$1 start end
  shift
  start=$(date +%s)
  if "$@" >"$OUT/$name.log" 2>&1; then
    end=$(date +%s)
    passed=$((passed + 1))
    echo "ok   $name ($((end - start)) s)"
  else
    failed=$((failed + 1))
    echo "FAIL $name; its output:"
    tail -n 30 "$OUT/$name.log" | sed 's/^/     /'
  fi
}

# render_ends CODE FILE ARGS...: `manimd render` of FILE fails with CODE.
render_ends() {
  local code=$1 file=$2
  shift 2
  local out
  out=$("$BIN" render --data-dir "$DATA" --quiet "$SCENES/$file" -o "$OUT/$file.mp4" "$@" 2>&1)
  echo "$out"
  grep -q "error\[$code\]" <<<"$out"
}

# render_ok FILE ARGS...: `manimd render` of FILE makes a video.
render_ok() {
  local file=$1
  shift
  "$BIN" render --data-dir "$DATA" --quiet "$SCENES/$file" -o "$OUT/$file.mp4" "$@" &&
    [ -s "$OUT/$file.mp4" ]
}

pure_v2() {
  grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts && ! grep -q ' cgroup ' /proc/mounts &&
    grep -q '^0::/$' /proc/self/cgroup
}

# Nothing of a job is left: no job group anywhere, no manimd-made parent at
# the root, no job area mounted.
nothing_left() {
  local groups
  groups=$(find "$CG" -mindepth 1 -type d \( -name '*-*' -o -name manimd -o -name jobs -o -name supervisor \) | grep -v '^$' || true)
  echo "groups: ${groups:-none}"
  [ -z "$groups" ] || return 1
  ! grep -q "$DATA" /proc/mounts
}

doctor_root_level() {
  local out
  out=$("$BIN" doctor --data-dir "$DATA")
  echo "$out"
  grep -q 'cgroups .*v2, job groups under /manimd (root-level fallback: this process runs in the root cgroup)' <<<"$out"
}

# A unit's group as systemd makes it with Delegate=yes: controllers handed
# down to it, the trusted.delegate mark, and the unit's MemoryMax= and
# TasksMax= as memory.max and pids.max.
make_unit_group() {
  echo "+memory +pids +cpu" >"$CG/cgroup.subtree_control" &&
    mkdir -p "$UNIT" &&
    echo "+memory +pids +cpu" >"$CG/test.slice/cgroup.subtree_control" &&
    python3 -c 'import os, sys; os.setxattr(sys.argv[1], "trusted.delegate", b"1")' "$UNIT" &&
    echo $((400 * 1024 * 1024)) >"$UNIT/memory.max" &&
    echo 1000 >"$UNIT/pids.max"
}

# sh -c "$IN_UNIT" "$UNIT" COMMAND...: runs COMMAND (in the same process)
# as the unit's main process.
# shellcheck disable=SC2016
IN_UNIT='echo $$ >"$0/cgroup.procs" && exec "$@"'

# manimd runs in the unit's supervisor leaf.
in_supervisor() {
  local p
  while read -r p; do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = manimd ] && return 0
  done <"$UNIT/supervisor/cgroup.procs"
  return 1
}

doctor_delegated() {
  local out
  out=$(sh -c "$IN_UNIT" "$UNIT" "$BIN" doctor --data-dir "$DATA")
  echo "$out"
  grep -q 'cgroups .*v2, job groups under /test.slice/manimd.service/jobs (delegated' <<<"$out" &&
    unit_is_bare
}

# The unit's group holds nothing of manimd's: no jobs, no supervisor leaf.
unit_is_bare() {
  local inside
  inside=$(find "$UNIT" -mindepth 1 -type d)
  echo "inside the unit: ${inside:-nothing}"
  [ -z "$inside" ]
}

# A render whose own cap (2048 MiB) is above the unit's memory.max (400 MiB)
# is stopped by the unit's: its job group is inside the unit's. While it
# runs, manimd is in the supervisor leaf and the job group under jobs/.
delegated_bound_by_the_unit() {
  sh -c "$IN_UNIT" "$UNIT" setpriv --no-new-privs "$BIN" render --data-dir "$DATA" --quiet \
    "$SCENES/memory.py" -o "$OUT/unit.mp4" --memory 2048 >"$OUT/unit-render.log" 2>&1 &
  local pid=$! seen_job=0 seen_leaf=0
  for _ in $(seq 1 1200); do
    if ls -d "$UNIT"/jobs/*-* >/dev/null 2>&1; then seen_job=1; fi
    if in_supervisor; then seen_leaf=1; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  wait "$pid"
  cat "$OUT/unit-render.log"
  echo "job group seen under jobs/: $seen_job; manimd seen in supervisor/: $seen_leaf"
  echo "the unit's memory.events: $(tr '\n' ' ' <"$UNIT/memory.events")"
  [ "$seen_job" = 1 ] && [ "$seen_leaf" = 1 ] &&
    grep -q 'error\[out-of-memory\]' "$OUT/unit-render.log" &&
    [ "$(awk '$1 == "oom_kill" {print $2}' "$UNIT/memory.events")" -ge 1 ] &&
    unit_is_bare
}

# `manimd serve` as the unit's main process: one render over HTTP, then a
# graceful stop (SIGTERM, as `systemctl stop` sends) leaves the unit bare.
serve_in_unit() {
  local port=18080 pid ok=0
  sh -c "$IN_UNIT" "$UNIT" setpriv --no-new-privs "$BIN" serve --data-dir "$DATA/serve" \
    --addr "127.0.0.1:$port" --workers 1 --warm-pool 0 >"$OUT/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && ok=1 && break
    sleep 0.5
  done
  [ "$ok" = 1 ] || { cat "$OUT/serve.log"; return 1; }
  grep -qx "$pid" "$UNIT/supervisor/cgroup.procs" || { echo "serve is not in supervisor/"; return 1; }
  ls -d "$UNIT/jobs" || return 1
  "$BIN" submit --quiet --server "http://127.0.0.1:$port" "$SCENES/ok.py" -o "$OUT/served.mp4" || return 1
  [ -s "$OUT/served.mp4" ] || return 1
  kill -TERM "$pid"
  wait "$pid"
  grep -E 'sandbox job groups|stopped' "$OUT/serve.log"
  unit_is_bare
}

cat >"$SCENES/ok.py" <<'EOF'
from manim import *


class Ok(Scene):
    def construct(self):
        self.play(Create(Square()), run_time=0.5)
EOF
cat >"$SCENES/gl.py" <<'EOF'
from manimlib import *


class Gl(Scene):
    def construct(self):
        self.play(ShowCreation(Square()), run_time=0.5)
EOF
# Touches a page at a time, so that the cgroup, not the kernel's overcommit
# check, is what stops it.
cat >"$SCENES/memory.py" <<'EOF'
from manim import *


class Memory(Scene):
    def construct(self):
        held = []
        for _ in range(4096):
            held.append(b"\x01" * (1 << 20))
EOF
# Each child only sleeps: a loop where every child forks too churns for many
# minutes under software emulation before the first process's own fork fails.
cat >"$SCENES/forks.py" <<'EOF'
import os, time
from manim import *


class Forks(Scene):
    def construct(self):
        while True:
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
EOF
cat >"$SCENES/sleeps.py" <<'EOF'
import time
from manim import *


class Sleeps(Scene):
    def construct(self):
        time.sleep(3600)
EOF

echo "vm-guest: $(uname -r), $(nproc) CPUs, mode $MODE"
check pure-cgroup-v2 pure_v2
check doctor-root-level doctor_root_level
check render-manim render_ok ok.py
check memory-cap render_ends out-of-memory memory.py --memory 500
check pids-cap render_ends process-limit forks.py
if [ "$MODE" = full ]; then
  # Under software emulation the engine's import takes most of a minute,
  # and the wall clock starts before it.
  check wall-clock render_ends timeout sleeps.py --timeout 120
  check render-manimgl render_ok gl.py
fi
check nothing-left-root-level nothing_left
check unit-group make_unit_group
check doctor-delegated doctor_delegated
check delegated-bound-by-unit delegated_bound_by_the_unit
if [ "$MODE" = full ]; then
  check serve-in-unit-and-stop serve_in_unit
fi
check nothing-left nothing_left
echo "vm-guest: $passed passed, $failed failed" | tee "$WORK/result"
