#!/usr/bin/env bash
# Builds manimd's container image (deploy/Containerfile) with podman and
# renders a scene in a running container of it, under the least privilege
# that README.md (Containers) documents. No image registry is reachable from
# the machines that test manimd, so the Debian 12 base is made here first:
# debootstrap from the Debian mirror, imported into podman.
#
#   scripts/container-test.sh         the full form: the image as users build
#                                     it (scripts/setup.sh runs inside, the
#                                     binary is built inside)
#   scripts/container-test.sh quick   what CI runs: the `prebuilt` stage,
#                                     which takes this machine's runtime
#                                     (/opt/manimd, from scripts/setup.sh) and
#                                     debug binary instead of building them
#                                     again; the image's Debian packages are
#                                     still installed in it
#
# Then, in both forms: `manimd doctor` in the container prints all ok, a
# Manim Community scene with MathTex renders with `manimd render` (ffprobe:
# H.264, 854x480, 2 s), `manimd serve` in the container renders it when
# submitted over HTTP from here, and so do an API node and a worker in two
# containers (deploy/compose.yaml's roles) on a PostgreSQL and an
# S3-compatible store (moto) started here. Installs what it needs first
# (`scripts/setup.sh container`: debootstrap, podman, buildah, runc).
# README.md gives the times. The base image is made once and kept
# (localhost/manimd-base:12; MANIMD_CTR_REBASE=1 makes it again).
set -euo pipefail

MODE="${1:-full}"
case "$MODE" in
  quick | full) ;;
  *)
    echo "usage: scripts/container-test.sh [quick|full]" >&2
    exit 2
    ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNTIME="${MANIMD_RUNTIME:-/opt/manimd}"
MIRROR="${MANIMD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE=localhost/manimd-base:12
IMAGE=localhost/manimd:test
NAME="manimd-test-$$"
cd "$ROOT"

log() { printf '\033[1mcontainer-test:\033[0m %s\n' "$*"; }
started=$(date +%s)
lap=$started
# stage NAME: prints how long the step before it took.
stage() {
  local now
  now=$(date +%s)
  log "$1 ($((now - lap)) s)"
  lap=$now
}

bash scripts/setup.sh container

WORK=$(mktemp -d /var/tmp/manimd-ctr.XXXXXX)
cleanup() {
  local c
  for c in "$NAME" "$NAME-serve" "$NAME-api" "$NAME-worker"; do
    podman rm -f -i -v -t 0 "$c" >/dev/null 2>&1 || true
  done
  # debootstrap mounts /proc and /sys in the tree it makes; an interrupted
  # run leaves them.
  if [ -d "$WORK/rootfs" ]; then
    umount -R "$WORK/rootfs/proc" "$WORK/rootfs/sys" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Podman's settings for this run only (CONTAINERS_CONF), for what the
# machines here are: cgroup v1 in hybrid mode, root without
# CAP_SYS_RESOURCE.
# - crun refuses a hybrid hierarchy whose v2 part holds a controller
#   ("cgroups in hybrid mode not supported"; here hugetlb): runc does not.
# - Rootful podman gives containers nofile and nproc limits above what root
#   may raise its own to without CAP_SYS_RESOURCE, and the runtime's
#   setrlimit fails (EPERM): the limits podman itself runs with instead.
# - No systemd: cgroupfs for the cgroups, a file for the events.
conf="$WORK/containers.conf"
runtime=crun
if grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts &&
  [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers)" ]; then
  runtime=runc
fi
cat >"$conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "$runtime"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$conf"
log "podman $(podman --version | cut -d' ' -f3), runtime $runtime, $MODE form"

# The base: Debian 12 (minbase) from the mirror, as an image.
if [ "${MANIMD_CTR_REBASE:-0}" = 1 ] || ! podman image exists "$BASE"; then
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
  cat >"$WORK/rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  rm -f "$WORK"/rootfs/var/cache/apt/archives/*.deb
  tar -C "$WORK/rootfs" -c . | podman import -q - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
  stage "base image $BASE made with debootstrap"
else
  stage "base image $BASE present"
fi

# The image. The one an earlier run left is removed once the new one is
# tagged, so that reruns do not pile up images (its layers that the new one
# shares stay, as podman's cache).
previous=$(podman image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
build=(podman build -q -f "$ROOT/deploy/Containerfile" --build-arg "BASE=$BASE" -t "$IMAGE")
if [ "$MODE" = quick ]; then
  # The build context: the setup script, and hard links to this machine's
  # runtime and binary (Debian 12 on both sides, the same /usr/bin/python3).
  bash scripts/setup.sh
  cargo build --quiet
  BIN="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/manimd"
  ctx="$WORK/context"
  mkdir -p "$ctx/scripts" "$ctx/deploy" "$ctx/prebuilt"
  cp scripts/setup.sh "$ctx/scripts/"
  cp deploy/entrypoint.sh "$ctx/deploy/"
  bash scripts/service-runtime.sh --link "$RUNTIME" "$ctx/prebuilt/runtime"
  cp -l "$BIN" "$ctx/prebuilt/manimd" 2>/dev/null || cp "$BIN" "$ctx/prebuilt/manimd"
  stage "host runtime and binary ready"
  "${build[@]}" --target prebuilt "$ctx" >/dev/null
else
  # This machine's CA bundle, for the downloads of the setup and the Rust
  # build over TLS (the machines here reach the internet through a proxy
  # that re-signs TLS with a CA of their own); mounted for the build only.
  "${build[@]}" -v /etc/ssl/certs/ca-certificates.crt:/run/build-ca.crt:ro \
    --build-arg CA_BUNDLE=/run/build-ca.crt "$ROOT" >/dev/null
fi
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect -f '{{.Id}}' "$IMAGE")" ]; then
  podman rmi -i "$previous" >/dev/null 2>&1 || true
fi
stage "image $IMAGE built ($(podman image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.1f GB", $1 / 1e9}'))"

# The least privilege under which the sandbox works in a container (README:
# Containers says why each is there). Podman's default seccomp profile
# allows what bubblewrap calls once CAP_SYS_ADMIN is given; its AppArmor
# profile would not (no AppArmor on the machines here).
PRIVS=(--cap-add SYS_ADMIN --cgroupns private --security-opt 'unmask=/proc/*')
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
  PRIVS+=(--security-opt apparmor=unconfined)
fi

# check_video FILE: ffprobe's codec, size and duration are the scene's.
check_video() {
  local got
  got=$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height \
    -show_entries format=duration -of csv=p=0 "$1" | tr '\n' ',')
  log "ffprobe $(basename "$1"): $got"
  python3 - "$got" <<'EOF'
import sys
codec, width, height, duration = sys.argv[1].split(",")[:4]
assert (codec, width, height) == ("h264", "854", "480"), sys.argv[1]
assert abs(float(duration) - 2.0) < 0.1, duration
EOF
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# render_over_http API CONTAINER FILE: submits the scene to API, waits for
# the job to succeed (CONTAINER's log shows when it does not) and fetches
# its video into FILE.
render_over_http() {
  local api=$1 container=$2 file=$3 body job status=
  for _ in $(seq 120); do
    curl -sf "$api/health" >/dev/null && break
    sleep 1
  done
  curl -sf "$api/health" >/dev/null || { podman logs "$container" >&2; exit 1; }
  body=$(python3 -c 'import json, sys; print(json.dumps({"code": open(sys.argv[1]).read()}))' "$scenes/scene.py")
  job=$(curl -sf -H 'authorization: Bearer container-test' -H 'content-type: application/json' \
    -d "$body" "$api/v1/renders" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  for _ in $(seq 300); do
    status=$(curl -sf -H 'authorization: Bearer container-test' "$api/v1/renders/$job" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
    case "$status" in succeeded | failed | canceled) break ;; esac
    sleep 1
  done
  [ "$status" = succeeded ] || { log "the job ended $status"; podman logs "$container" >&2; exit 1; }
  curl -sf -H 'authorization: Bearer container-test' -o "$file" "$api/v1/renders/$job/video"
}

scenes="$WORK/scenes"
out="$WORK/out"
mkdir -p "$scenes" "$out"
cat >"$scenes/scene.py" <<'EOF'
from manim import *


class Formula(Scene):
    def construct(self):
        self.play(Write(MathTex(r"e^{i\pi} + 1 = 0")), run_time=1)
        self.wait(1)
EOF

podman run --rm "${PRIVS[@]}" "$IMAGE" doctor >"$WORK/doctor.log" 2>&1 ||
  { cat "$WORK/doctor.log" >&2; log "doctor failed in the container"; exit 1; }
sed 's/^/    /' "$WORK/doctor.log"
stage "doctor in the container: all ok"

podman run --rm --name "$NAME" "${PRIVS[@]}" -v "$scenes:/scenes:ro" -v "$out:/out" \
  "$IMAGE" render --quiet /scenes/scene.py -o /out/render.mp4
check_video "$out/render.mp4"
stage "manimd render in the container"

# serve: a scene submitted over HTTP from here, through a published port.
port=$(free_port)
podman run -d --name "$NAME-serve" "${PRIVS[@]}" -p "127.0.0.1:$port:8080" \
  -e MANIMD_API_KEYS=container-test "$IMAGE" serve >/dev/null
render_over_http "http://127.0.0.1:$port" "$NAME-serve" "$out/serve.mp4"
check_video "$out/serve.mp4"
podman stop -t 60 "$NAME-serve" >/dev/null
stage "manimd serve in the container"

# The scaled-out roles of deploy/compose.yaml: an API node (serve, no
# workers) and a render node (worker) in two containers, on a PostgreSQL and
# an S3-compatible store (moto's server, from the tools venv) started here,
# reached over the host's network (no registry for their images).
pg_bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin | sort -V | tail -n 1)
# PostgreSQL's user must pass through $WORK (mktemp made it 0700).
chmod 711 "$WORK"
install -d -m 755 "$WORK/pg"
install -d -o postgres -g postgres "$WORK/pg/data" "$WORK/pg/sock"
runuser -u postgres -- "$pg_bin/initdb" --auth=trust --username=manimd -D "$WORK/pg/data" >/dev/null
pg_port=$(free_port)
runuser -u postgres -- "$pg_bin/postgres" -D "$WORK/pg/data" -p "$pg_port" -k "$WORK/pg/sock" \
  -c listen_addresses=127.0.0.1 >"$WORK/pg.log" 2>&1 &
pg_pid=$!
s3_port=$(free_port)
"$RUNTIME/venv/tools/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$WORK/moto.log" 2>&1 &
moto_pid=$!
trap 'kill "$pg_pid" "$moto_pid" 2>/dev/null || true; wait "$pg_pid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 300); do
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" &&
    curl -sf -X PUT "http://127.0.0.1:$s3_port/videos" >/dev/null && break
  sleep 0.2
done
api_port=$(free_port)
shared=(--network host
  -e "MANIMD_DATABASE=postgres://manimd@127.0.0.1:$pg_port/postgres"
  -e "MANIMD_STORAGE=s3://videos?endpoint=http://127.0.0.1:$s3_port&region=us-east-1"
  -e AWS_ACCESS_KEY_ID=test -e AWS_SECRET_ACCESS_KEY=test)
podman run -d --name "$NAME-api" "${PRIVS[@]}" "${shared[@]}" -e "MANIMD_ADDR=127.0.0.1:$api_port" \
  -e MANIMD_WORKERS=0 -e MANIMD_API_KEYS=container-test "$IMAGE" serve >/dev/null
podman run -d --name "$NAME-worker" "${PRIVS[@]}" "${shared[@]}" "$IMAGE" worker >/dev/null
render_over_http "http://127.0.0.1:$api_port" "$NAME-worker" "$out/scaled.mp4"
curl -sf "http://127.0.0.1:$api_port/health" | grep -q '"backend":"s3".*"database":"postgres"'
check_video "$out/scaled.mp4"
podman stop -t 60 "$NAME-api" "$NAME-worker" >/dev/null
stage "an API node and a worker in containers, on PostgreSQL and S3"

log "passed in $(($(date +%s) - started)) s ($MODE form)"
