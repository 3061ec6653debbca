#!/bin/sh
# Builds the attest-sidecar image with podman where no container registry is reachable
# (docs/image.md):
#   1. the Node base image, assembled locally: Debian bookworm (debootstrap --variant=minbase from
#      the Debian mirror apt uses) plus this machine's node and npm, imported as $BASE_IMAGE.
#      Cached: reused when podman has it (for the same node version), else loaded from the
#      tarball kept in $CACHE_DIR, else assembled (needs root and debootstrap);
#   2. `podman build --build-arg NODE_IMAGE=$BASE_IMAGE -t $IMAGE .` (the repository's Dockerfile).
#
# Usage: scripts/build-image.sh [--base-only] [--rebuild-base]
# Environment:
#   IMAGE            image to build (default localhost/attest-sidecar:dev)
#   BASE_IMAGE       base image name (default localhost/attest-sidecar-base:node<major>)
#   NODE_BIN         node to put in the base (default: the one on PATH)
#   DEBIAN_MIRROR    Debian mirror (default: the first .../debian URI in apt's sources)
#   CACHE_DIR        default $ATTEST_SIDECAR_CACHE, else ~/.cache/attest-sidecar (as the other build scripts)
#   NPM_CACHE        npm cache to reuse in the build's `npm ci` (copy-on-write overlay, never
#                    written to; default ~/.npm when it exists; empty: none)
#   PODMAN_FLAGS     extra global podman flags, e.g. "--storage-driver vfs" (word-split)
#
# Prints the image name on its last line of stdout; progress goes to stderr.
set -eu

say() { printf 'build-image: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

BASE_ONLY=0
REBUILD_BASE=0
for arg in "$@"; do
  case "$arg" in
    --base-only) BASE_ONLY=1 ;;
    --rebuild-base) REBUILD_BASE=1 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE_DIR=${CACHE_DIR:-${ATTEST_SIDECAR_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/attest-sidecar}}
NODE_BIN=${NODE_BIN:-$(command -v node || true)}
if [ -z "$NODE_BIN" ] || [ ! -x "$NODE_BIN" ]; then die "no node on PATH (set NODE_BIN)"; fi
NODE_BIN=$(readlink -f "$NODE_BIN")
NODE_VERSION=$("$NODE_BIN" --version | sed 's/^v//')
NODE_MAJOR=${NODE_VERSION%%.*}
[ "$NODE_MAJOR" -ge 20 ] || die "node $NODE_VERSION at $NODE_BIN: the sidecar needs node >= 20"
BASE_IMAGE=${BASE_IMAGE:-localhost/attest-sidecar-base:node$NODE_MAJOR}
IMAGE=${IMAGE:-localhost/attest-sidecar:dev}
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
BASE_TARBALL=$CACHE_DIR/base-bookworm-node$NODE_VERSION-$ARCH.tar
# runc, not crun: crun fails here on cgroups and setrlimit (also for the RUN steps of a build).
PODMAN_FLAGS=${PODMAN_FLAGS:-}
# shellcheck disable=SC2086
podman_() { podman --runtime runc $PODMAN_FLAGS "$@"; }

command -v podman >/dev/null || die "podman is not installed (apt-get install podman runc debootstrap)"
command -v runc >/dev/null || die "runc is not installed (apt-get install podman runc debootstrap)"
mkdir -p "$CACHE_DIR"

# One build at a time per cache (tests and people may run this concurrently).
if command -v flock >/dev/null && [ -z "${BUILD_IMAGE_LOCKED:-}" ]; then
  export BUILD_IMAGE_LOCKED=1
  exec flock -w 1800 "$CACHE_DIR/build-image.lock" "$0" "$@"
fi

# The Debian mirror apt uses here (deb822 .sources files or one-line sources.list entries).
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '
      /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }
      /^deb / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { if ($i ~ /\/debian\/?$/) { print $i; exit } else break } }
    ' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  echo http://deb.debian.org/debian
}

base_node_version() {
  podman_ image inspect --format '{{ index .Config.Labels "io.attest-sidecar.node-version" }}' "$BASE_IMAGE" 2>/dev/null || true
}

# Unmounts whatever is mounted below $1 (debootstrap can leave the target's /proc mounted), deepest first.
unmount_under() {
  awk -v root="$1/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
    umount -l "$mnt" || say "warning: cannot unmount $mnt"
  done
}

assemble_base() {
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install podman runc debootstrap)"
  [ "$(id -u)" = 0 ] || die "assembling the base image needs root (debootstrap); or provide $BASE_TARBALL"
  mirror=$(debian_mirror)
  work=$(mktemp -d "$CACHE_DIR/base-rootfs.XXXXXX")
  trap 'unmount_under "$work"; rm -rf --one-file-system "$work"' EXIT
  trap 'exit 1' INT TERM
  rootfs=$work/rootfs
  say "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  unmount_under "$rootfs"

  say "adding node $NODE_VERSION ($NODE_BIN) and npm"
  # Where the official node images keep them, so that the Dockerfile works with either base.
  install -D -m 0755 "$NODE_BIN" "$rootfs/usr/local/bin/node"
  # The shared libraries node links, where the rootfs lacks them (minbase has libc6, libstdc++6).
  ldd "$NODE_BIN" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
    [ -e "$rootfs$lib" ] || { say "copying $lib"; install -D -m 0644 "$(readlink -f "$lib")" "$rootfs$lib"; }
  done
  npm_dir=$(dirname "$NODE_BIN")/../lib/node_modules/npm
  [ -f "$npm_dir/package.json" ] || npm_dir=$(dirname "$(readlink -f "$(command -v npm)")")/..
  [ -f "$npm_dir/package.json" ] || die "cannot find npm next to $NODE_BIN"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$(readlink -f "$npm_dir")" "$rootfs/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"

  # What a container never needs: package caches and lists, documentation, manuals.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$rootfs" /usr/local/bin/node -e 'process.exit(0)' || die "node does not run in the assembled rootfs"

  say "importing $BASE_IMAGE"
  unmount_under "$rootfs"
  tar -C "$rootfs" --numeric-owner --one-file-system -cf - . | podman_ import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=$NODE_VERSION" \
    --change "LABEL io.attest-sidecar.node-version=$NODE_VERSION" \
    --change "LABEL io.attest-sidecar.debian-mirror=$mirror" \
    --change 'CMD ["node"]' \
    - "$BASE_IMAGE" >/dev/null
  rm -rf --one-file-system "$work"
  trap - EXIT INT TERM
  say "saving $BASE_TARBALL"
  podman_ save --format docker-archive -o "$BASE_TARBALL.tmp" "$BASE_IMAGE" >/dev/null
  mv "$BASE_TARBALL.tmp" "$BASE_TARBALL"
}

# ---- 1. the base image ----
if [ "$REBUILD_BASE" = 1 ]; then
  podman_ rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
  rm -f "$BASE_TARBALL"
fi
if [ "$(base_node_version)" = "$NODE_VERSION" ]; then
  say "base image $BASE_IMAGE (node $NODE_VERSION) present: reused"
elif [ -f "$BASE_TARBALL" ]; then
  say "loading $BASE_IMAGE from $BASE_TARBALL"
  podman_ load -i "$BASE_TARBALL" >/dev/null
  [ "$(base_node_version)" = "$NODE_VERSION" ] || die "$BASE_TARBALL did not provide $BASE_IMAGE with node $NODE_VERSION (delete it, or --rebuild-base)"
else
  assemble_base
fi
[ "$BASE_ONLY" = 1 ] && { echo "$BASE_IMAGE"; exit 0; }

# ---- 2. the image ----
# A CA bundle this machine trusts beyond Node's roots (a TLS-inspecting egress proxy): mounted
# into the build's RUN steps for `npm ci`, never copied into an image.
set --
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
  set -- --volume "$(readlink -f "$NODE_EXTRA_CA_CERTS"):/run/build-ca-certs.pem:ro" --build-arg NODE_EXTRA_CA_CERTS=/run/build-ca-certs.pem
fi
# The host's npm cache under an overlay (:O): `npm ci` checks every package against the lock
# file's integrity, and what it writes is discarded with the build container.
NPM_CACHE=${NPM_CACHE-${HOME:-/root}/.npm}
if [ -n "$NPM_CACHE" ] && [ -d "$NPM_CACHE" ]; then
  set -- "$@" --volume "$(readlink -f "$NPM_CACHE"):/root/.npm:O"
fi
say "podman build --build-arg NODE_IMAGE=$BASE_IMAGE -t $IMAGE $REPO"
podman_ build --pull=never --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@" \
  --build-arg "NODE_IMAGE=$BASE_IMAGE" -t "$IMAGE" -f "$REPO/Dockerfile" "$REPO" >&2
echo "$IMAGE"
