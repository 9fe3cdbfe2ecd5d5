#!/usr/bin/env bash
# A Debian bookworm base image built locally, for machines that cannot pull python:3.11.14-slim-bookworm.
#
#   base-image.sh IMAGE ROOT [MIRROR]
#
# `debootstrap --variant=minbase` bookworm with Python 3.11 (python3, python3-venv: `python3 -m venv`
# works) and ca-certificates, then `docker import` as IMAGE (e.g. tabpipe-base:bookworm). The root
# filesystem is kept as a tarball in ROOT (= $(TABPIPE_CACHE)/docker/rootfs), with the list of its
# package versions beside it, so a second build (another clone, a reset engine) skips debootstrap.
# Delete the tarball to rebuild from the mirror (e.g. for a new Debian point release).
# Needs root (debootstrap) and a Docker engine at $DOCKER_HOST (make docker-up).
set -euo pipefail

image=${1:?usage: base-image.sh IMAGE ROOT [MIRROR]}
root=${2:?usage: base-image.sh IMAGE ROOT [MIRROR]}
mirror=${3:-http://deb.debian.org/debian}
suite=bookworm
packages=python3,python3-venv,ca-certificates
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
tarball="$root/debian-$suite-minbase-$arch.tar"
manifest="$tarball.packages"

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image: $image already in the engine"
    exit 0
fi

if [[ ! -f $tarball ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "base image: debootstrap needs root; or build with the official base: make image BASE_IMAGE=python:3.11.14-slim-bookworm" >&2
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        echo "base image: installing debootstrap"
        apt-get install -y --no-install-recommends debootstrap >/dev/null \
            || { apt-get update >/dev/null && apt-get install -y --no-install-recommends debootstrap >/dev/null; }
    fi
    mkdir -p "$root"
    work=$(mktemp -d "$root/rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    started=$(date +%s)
    echo "base image: debootstrap --variant=minbase $suite ($packages) from $mirror (about 2 minutes)"
    debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
    # What an image needs of it: no apt lists or package caches, no machine identity.
    rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/cache/apt/archives/"*.deb
    : >"$work/rootfs/etc/machine-id"
    chroot "$work/rootfs" dpkg-query -W -f '${Package}=${Version}\n' >"$work/packages"
    tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
    mv "$work/packages" "$manifest"
    mv "$work/rootfs.tar" "$tarball"
    echo "base image: root filesystem in $(($(date +%s) - started))s: $tarball ($(du -h "$tarball" | cut -f1))"
fi

debian=$(tar -xOf "$tarball" ./etc/debian_version)
python=$(grep '^python3.11=' "$manifest" | cut -d= -f2)
docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.title=tabpipe-base org.opencontainers.image.description=\"Debian $suite minbase $debian with python3.11 $python (debootstrap)\" org.tabpipe.debian-version=$debian org.tabpipe.python-package=$python" \
    "$tarball" "$image" >/dev/null
echo "base image: $image imported (Debian $debian, python3.11 $python; package list: $manifest)"
