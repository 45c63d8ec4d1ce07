#!/bin/sh
# A Docker engine for `make compose-test` on CI machines that have none running: as root, Debian's
# docker.io and debootstrap (for infra/docker/local-bases.sh) are installed when missing, then
# dockerd is started in the background. Elsewhere it only reports what it finds.
set -eu

if docker info >/dev/null 2>&1; then
    echo "ci: Docker engine running"
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    command -v dockerd >/dev/null || missing="$missing docker.io"
    command -v debootstrap >/dev/null || missing="$missing debootstrap"
    if [ -n "$missing" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
fi
command -v dockerd >/dev/null || { echo "ci: dockerd not installed"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "ci: dockerd needs root"; exit 1; }
setsid dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && { echo "ci: Docker engine started"; exit 0; }
    sleep 1
done
echo "ci: dockerd did not answer within 60 s (see /tmp/dockerd.log)"
exit 1
