#!/usr/bin/env bash
# The one way sfls builds and runs its image without a Docker engine: Debian's buildah and podman as
# root, daemonless, vfs storage, chroot isolation for the build, the host network. `make image`,
# `make image-run` and tests/deploy/test_image.py all come through here.
#
#   deploy/image.sh build            build the Dockerfile, tag localhost/sfls:<version>, print its size
#   deploy/image.sh bases            only make sure the base images exist (official or local Debian)
#   deploy/image.sh run ARGS...      podman run --rm with this machine's flags, e.g.
#                                    deploy/image.sh run --read-only --tmpfs /tmp localhost/sfls:0.1.0 --help
#   deploy/image.sh podman ARGS...   any podman command on the same storage (logs, stop, inspect, rm)
#   deploy/image.sh size [IMAGE]     the image's size in bytes
#   deploy/image.sh name             the image's name (localhost/sfls:<version>)
#
# Bases: the Dockerfile's defaults (the official python:3.11-slim-bookworm) when a registry serves them
# within SFLS_IMAGE_PULL_TIMEOUT seconds; otherwise two local images built from Debian bookworm packages
# with mmdebstrap (a build base with pip and venv, a runtime base without them), imported into the same
# storage and cached as tarballs in ~/.cache/sfls/image, keyed by a hash of their package lists, suite
# and mirrors, so they are rebuilt only when those change (delete the cache to pick up Debian updates).
#
# Settings (environment): SFLS_IMAGE (name), SFLS_IMAGE_BASE (auto | official | local; default auto),
# SFLS_IMAGE_PULL_TIMEOUT (default 60), SFLS_IMAGE_CACHE, SFLS_DEBIAN_MIRROR, SFLS_DEBIAN_SECURITY_MIRROR,
# STORAGE_DRIVER (default vfs), SFLS_PODMAN_RUNTIME (default runc when installed: crun refuses hybrid
# cgroup hierarchies, which these machines have).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
CACHE=${SFLS_IMAGE_CACHE:-$HOME/.cache/sfls/image}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)
IMAGE=${SFLS_IMAGE:-localhost/sfls:$VERSION}
BASE=${SFLS_IMAGE_BASE:-auto}
PULL_TIMEOUT=${SFLS_IMAGE_PULL_TIMEOUT:-60}
SUITE=bookworm
MIRROR=${SFLS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SFLS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What each local base holds. python-is-python3: `python` exists (the venv links to /usr/bin/python);
# passwd: groupadd and useradd for the runtime stage.
BUILD_PACKAGES="python3 python3-venv python3-pip python-is-python3 ca-certificates"
RUNTIME_PACKAGES="python3 python-is-python3 ca-certificates passwd"
# Essential packages only (no apt in the image), merged /usr without the usrmerge package (which pulls
# in perl), no recommends, no documentation, manuals or translations (copyright files stay).
MMDEBSTRAP_OPTIONS=(
  --variant=essential
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
)
HINT="install them with 'make image-tools' (as root: apt-get install buildah podman mmdebstrap runc)"

if [[ -z ${SFLS_PODMAN_RUNTIME:-} ]] && command -v runc > /dev/null; then
  SFLS_PODMAN_RUNTIME=runc
fi
BUILDAH=(buildah --storage-driver "$STORAGE_DRIVER")
PODMAN=(podman --storage-driver "$STORAGE_DRIVER")
if [[ -n ${SFLS_PODMAN_RUNTIME:-} ]]; then
  PODMAN+=(--runtime "$SFLS_PODMAN_RUNTIME")
fi

say() { echo "image: $*" >&2; }

need() {
  local missing=()
  for tool in "$@"; do
    command -v "$tool" > /dev/null || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    say "${missing[*]} missing: $HINT"
    exit 127
  fi
}

image_id() { "${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$1" 2> /dev/null; }

# Echo the Dockerfile's default for a base ARG.
default_base() { sed -n "s/^ARG $1=//p" "$ROOT/Dockerfile"; }

# Make sure an official base image is in the storage: present already, or pulled within the timeout.
official() {
  local ref=$1
  if image_id "$ref" > /dev/null; then
    return 0
  fi
  say "pulling $ref (at most ${PULL_TIMEOUT}s)"
  if timeout "$PULL_TIMEOUT" "${BUILDAH[@]}" pull --quiet "$ref" > /dev/null; then
    return 0
  fi
  say "no registry served $ref"
  return 1
}

# Make sure the local Debian base of one kind (build or runtime) is in the storage; echo its name.
local_base() {
  local kind=$1 packages=$2 spec hash tag tarball started
  spec="suite=$SUITE mirrors=$MIRROR,$SECURITY_MIRROR packages=$packages options=${MMDEBSTRAP_OPTIONS[*]}"
  hash=$(printf '%s' "$spec" | sha256sum | cut -c 1-12)
  tag="localhost/sfls-base:$kind-$SUITE-$hash"
  if image_id "$tag" > /dev/null; then
    echo "$tag"
    return 0
  fi
  tarball="$CACHE/base-$kind-$SUITE-$hash.tar"
  if [[ ! -s $tarball ]]; then
    need mmdebstrap
    say "building the $kind base from Debian $SUITE packages ($packages) with mmdebstrap"
    started=$SECONDS
    # stdin from /dev/null: mmdebstrap reads sources from a non-terminal stdin.
    mmdebstrap "${MMDEBSTRAP_OPTIONS[@]}" --include="${packages// /,}" --format=tar "$SUITE" "$tarball.part" \
      "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" \
      < /dev/null >&2
    mv "$tarball.part" "$tarball"
    say "$kind base built in $((SECONDS - started))s: $tarball"
  fi
  "${PODMAN[@]}" import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "sfls $kind base: Debian $SUITE, $packages" "$tarball" "$tag" > /dev/null
  echo "$tag"
}

# Decide the two bases; sets BUILD_BASE, RUNTIME_BASE and BASE_KIND.
bases() {
  need buildah podman
  mkdir -p "$CACHE"
  BUILD_BASE=$(default_base PYTHON_IMAGE)
  RUNTIME_BASE=$(default_base RUNTIME_IMAGE)
  if [[ $BASE != local ]] && official "$BUILD_BASE" && official "$RUNTIME_BASE"; then
    BASE_KIND=official
    return 0
  fi
  if [[ $BASE == official ]]; then
    say "SFLS_IMAGE_BASE=official but the official base is not available"
    exit 1
  fi
  say "using the local Debian $SUITE bases"
  BUILD_BASE=$(local_base build "$BUILD_PACKAGES")
  RUNTIME_BASE=$(local_base runtime "$RUNTIME_PACKAGES")
  BASE_KIND=local
}

build() {
  local old new started size volumes=()
  mkdir -p "$CACHE"
  # One build at a time per machine: image builds are the heaviest thing the suite does.
  exec 9> "$CACHE/.build.lock"
  flock -w 1800 9
  bases
  # The host's CA bundle, for pip behind a TLS-inspecting proxy; used by the build only, never stored.
  if [[ -d /etc/ssl/certs ]]; then
    volumes=(--volume /etc/ssl/certs:/etc/ssl/certs:ro)
  fi
  old=$(image_id "$IMAGE" || true)
  started=$SECONDS
  say "building $IMAGE on $BUILD_BASE / $RUNTIME_BASE"
  "${BUILDAH[@]}" bud --isolation chroot --network host "${volumes[@]}" \
    --build-arg "PYTHON_IMAGE=$BUILD_BASE" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE" \
    --label "org.opencontainers.image.version=$VERSION" --label "org.opencontainers.image.base.name=$RUNTIME_BASE" \
    --tag "$IMAGE" --file "$ROOT/Dockerfile" "$ROOT" >&2
  new=$(image_id "$IMAGE")
  if [[ -n $old && $old != "$new" ]]; then
    "${BUILDAH[@]}" rmi "$old" > /dev/null 2>&1 || say "kept the previous image $old (still in use)"
  fi
  size=$(image_size)
  say "built $IMAGE in $((SECONDS - started))s on the $BASE_KIND base: $((size / 1048576)) MiB ($size bytes)"
  echo "$IMAGE"
}

image_size() { "${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE"; }

run() {
  need podman
  local nofile
  nofile=$(ulimit -Hn)
  [[ $nofile == unlimited ]] && nofile=1048576
  # podman's default rlimits exceed what a root without CAP_SYS_RESOURCE may set: ask for the current
  # open-files limit and a process limit well under conmon's.
  exec "${PODMAN[@]}" run --rm --network host --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096 "$@"
}

command=${1:-build}
shift || true
case $command in
  build) build ;;
  bases)
    bases
    echo "$BUILD_BASE $RUNTIME_BASE ($BASE_KIND)"
    ;;
  run) run "$@" ;;
  podman)
    need podman
    exec "${PODMAN[@]}" "$@"
    ;;
  size)
    IMAGE=${1:-$IMAGE}
    image_size
    ;;
  name) echo "$IMAGE" ;;
  *)
    say "unknown command $command (build | bases | run | podman | size | name)"
    exit 2
    ;;
esac
