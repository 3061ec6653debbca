#!/bin/sh
# Builds the real SPIRE server and agent (v1.13.3) that the tests and `attest-sidecar dev --spire`
# run, into a cache outside the repository; a warm machine reuses them. The versions of every
# module are pinned by tools/spire/go.mod and go.sum (SPIRE v1.13.3's own requirements).
# cgo is required: SPIRE's sqlite datastore exists only with cgo (gcc). Needs Go >= 1.25.3.
#   scripts/build-spire.sh            build unless already built; prints the folder
#   SPIRE_BIN_DIR=DIR scripts/build-spire.sh
set -eu
version=1.13.3
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${ATTEST_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/attest-sidecar}
bin=${SPIRE_BIN_DIR:-$cache/spire-v$version/bin}

if [ -x "$bin/spire-server" ] && [ -x "$bin/spire-agent" ] &&
  "$bin/spire-server" --version 2>&1 | grep -q "^$version" && "$bin/spire-agent" --version 2>&1 | grep -q "^$version"; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || PATH=/usr/local/go/bin:$PATH
if ! command -v go >/dev/null 2>&1; then
  echo "build-spire: no Go toolchain (need Go >= 1.25.3 on PATH or in /usr/local/go/bin)" >&2
  exit 1
fi
command -v gcc >/dev/null 2>&1 || { echo "build-spire: gcc is required (cgo, for SPIRE's sqlite datastore)" >&2; exit 1; }

tmp="$bin.partial.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
echo "build-spire: building SPIRE v$version with $(go version) (a cold build takes minutes)" >&2
cd "$root/tools/spire"
CGO_ENABLED=1 GOBIN="$tmp" GOFLAGS=-mod=readonly go install github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
mkdir -p "$bin"
mv -f "$tmp/spire-server" "$bin/spire-server"
mv -f "$tmp/spire-agent" "$bin/spire-agent"
echo "$bin"
