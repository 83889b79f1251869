#!/bin/sh
# The image's entrypoint, under tini: makes the container's cgroup tree
# writable, then runs manimd with the container's arguments.
#
# Podman and Docker mount /sys/fs/cgroup read-only in a container that is not
# privileged, and neither offers an option that changes that on every host
# (podman's unmask=/sys/fs/cgroup does nothing on cgroup v1). manimd must
# create its job groups there. With CAP_SYS_ADMIN, which the sandbox needs
# anyway, the container may remount its own view read-write: with a private
# cgroup namespace (--cgroupns private) that view is the container's own
# group, so its limits still bound every render. Where the remount fails,
# `manimd doctor` (and `serve` at start) says what is missing.
set -eu
awk '($3 == "cgroup" || $3 == "cgroup2") && $4 ~ /(^|,)ro(,|$)/ { print $2 }' /proc/self/mounts |
  while read -r mount; do
    mount -o remount,bind,rw "$mount" 2>/dev/null || true
  done
exec /usr/local/bin/manimd "$@"
