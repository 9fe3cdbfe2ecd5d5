#!/usr/bin/env bash
# Build the project image (make image): tabpipe:<version> from docker/Dockerfile, on the engine at $DOCKER_HOST.
#
#   image.sh TAG PYTHON ROOT
#
# TAG     the image to build (components/image.py names tabpipe:<version>; the compiled pipeline uses it)
# PYTHON  the project's venv python (writes the code-version and data-digest labels a run checks)
# ROOT    $(TABPIPE_CACHE)/docker (where make base-image keeps its root filesystem)
#
# Environment (all optional; make image passes them through):
# BASE_IMAGE       the base, the same in both stages. Unset: the official python image when the engine
#                  has it or can pull it, else tabpipe-base:bookworm (built by base-image.sh when missing)
# EXTRA_CA_FILES   PEM files of CAs pip must trust during the build (a TLS-inspecting proxy); builder only
# BUILD_NETWORK    docker build --network (default host: our dockerd has no bridge network)
# DEBIAN_MIRROR    for base-image.sh
set -euo pipefail

tag=${1:?usage: image.sh TAG PYTHON ROOT}
python=${2:?usage: image.sh TAG PYTHON ROOT}
root=${3:?usage: image.sh TAG PYTHON ROOT}
here=$(cd "$(dirname "$0")" && pwd)
official=python:3.11.14-slim-bookworm
local_base=tabpipe-base:bookworm

base=${BASE_IMAGE:-}
if [[ -z $base ]]; then
    if docker image inspect "$official" >/dev/null 2>&1; then
        base=$official
    elif docker image inspect "$local_base" >/dev/null 2>&1; then
        base=$local_base
    elif timeout "${PULL_TIMEOUT:-300}" docker pull --quiet "$official" >/dev/null 2>&1; then
        base=$official
    else
        echo "image: $official cannot be pulled here; using $local_base (debootstrap)"
        bash "$here/base-image.sh" "$local_base" "$root/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
        base=$local_base
    fi
elif ! docker image inspect "$base" >/dev/null 2>&1 && [[ $base == "$local_base" ]]; then
    bash "$here/base-image.sh" "$local_base" "$root/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi

extra_ca=""
for file in ${EXTRA_CA_FILES:-}; do
    [[ -f $file ]] && extra_ca+="$(cat "$file")"$'\n'
done

labels=$("$python" -m tabpipe.docker_runner labels)
previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
started=$(date +%s)
mkdir -p "$root"
log="$root/image-build.log"
echo "image: building $tag on $base (steps below; full log: $log)"
set +e  # the build's own status is read below (PIPESTATUS), not the filter's
# shellcheck disable=SC2086  # $labels is several --label k=v words
docker build \
    --network="${BUILD_NETWORK:-host}" \
    --file "$here/Dockerfile" \
    --build-arg BASE_IMAGE="$base" \
    --build-arg EXTRA_CA_CERTS="$extra_ca" \
    $labels \
    --tag "$tag" \
    "$here/.." 2>&1 | tee "$log" | { grep --line-buffered -E '^Step [0-9]+/|^#[0-9]+ \[' | cut -c1-120 || true; }
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
    echo "image: docker build failed (exit $status); the end of $log:" >&2
    tail -n 40 "$log" >&2
    exit "$status"
fi
# The image this build replaced keeps only layers nobody else uses: remove it (never any other image;
# refused by the engine while a container or another tag still uses it).
current=$(docker image inspect --format '{{.Id}}' "$tag")
if [[ -n $previous && $previous != "$current" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
size=$(docker image inspect "$tag" --format '{{.Size}}')
echo "image: $tag built in $(($(date +%s) - started))s on $base ($((size / 1000000)) MB)"
