#!/usr/bin/env bash
# Build the service image with the Dockerfile as shipped, air-gapped, and prove it from inside.
#
#   scripts/download_wheels.sh     # once, on a machine that reaches the package index
#   scripts/build_image.sh         # here: no registry, no network during the build
#
# 1. A local base image (cached): Debian bookworm from debootstrap (minbase) with Python 3.11 in a
#    virtual environment on PATH, so `python` and `pip` behave as in python:3.11-slim-bookworm; passed
#    through the Dockerfile's PYTHON_IMAGE argument (only the base is swapped).
# 2. `podman build --isolation chroot` with PIP_ARGS="--no-index --find-links /wheels", inside a network
#    namespace with no interface up: nothing can be fetched.
# 3. A smoke test in the built image's file system (a container's writable mount, chroot, its
#    environment, user `rag`, no network but loopback): rag doctor, rag ingest of the samples, rag ask
#    with a cited answer, the page's and the API's health endpoints, the image's HEALTHCHECK command.
# Prints the image size and the build time. Needs root (or `podman unshare`), podman, buildah,
# debootstrap (apt-get install podman buildah debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/rag:cpu}
BASE=${BASE_IMAGE:-localhost/rag-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${BUILD_CACHE:-build}
export BUILDAH_ISOLATION=chroot
mkdir -p "$CACHE"

ls wheels/*.whl >/dev/null 2>&1 || { echo "wheels/ is empty: run scripts/download_wheels.sh first" >&2; exit 2; }

if ! podman image exists "$BASE"; then
  started=$(date +%s)
  root="$CACHE/base-rootfs"
  if [ ! -f "$CACHE/base-bookworm.tar" ]; then
    rm -rf "$root"
    # libgomp1: OpenMP for torch, FAISS and ONNX Runtime; passwd (useradd) is part of minbase
    debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,python3-pip-whl,python3-setuptools-whl,ca-certificates,libgomp1 \
      bookworm "$root" "$MIRROR"
    chroot "$root" python3.11 -m venv /opt/python
    chroot "$root" /opt/python/bin/pip --version
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$CACHE/base-bookworm.tar" .
    rm -rf "$root"
  fi
  podman import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$CACHE/base-bookworm.tar" "$BASE"
  echo "base image $BASE made in $(( $(date +%s) - started )) s"
fi

started=$(date +%s)
# no network during the build: a namespace whose only interface (loopback) is down (chroot isolation
# shares its caller's network, so podman's --network none is refused; the namespace does the same)
# docker format: OCI images drop HEALTHCHECK, which docker-compose and the smoke test rely on
unshare --net podman build --isolation chroot --format docker \
  --build-arg PYTHON_IMAGE="$BASE" --build-arg PIP_ARGS="--no-index --find-links /wheels" \
  -t "$IMAGE" .
build_s=$(( $(date +%s) - started ))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $(( size / 1000000 )) MB, built in ${build_s} s"

exec scripts/smoke_image.sh "$IMAGE"
