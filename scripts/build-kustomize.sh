#!/bin/sh
# Builds the kustomize CLI that renders deploy/ in the tests, into a cache outside the repository;
# a warm machine reuses it. `go install module@version` pins kustomize's own go.mod/go.sum, so the
# build is reproducible. v5.8.1 is the newest release that builds on Go 1.26 (v5.8.2+ ask for a
# newer Go). Needs Go >= 1.24 and the Go module proxy; no cgo.
#   scripts/build-kustomize.sh            build unless already built; prints the binary's path
#   KUSTOMIZE_BIN_DIR=DIR scripts/build-kustomize.sh
set -eu
version=5.8.1
cache=${ATTEST_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/attest-sidecar}
bin=${KUSTOMIZE_BIN_DIR:-$cache/kustomize-v$version}

if [ -x "$bin/kustomize" ] && "$bin/kustomize" version 2>/dev/null | grep -q "v$version"; then
  echo "$bin/kustomize"
  exit 0
fi

command -v go >/dev/null 2>&1 || PATH=/usr/local/go/bin:$PATH
if ! command -v go >/dev/null 2>&1; then
  echo "build-kustomize: no Go toolchain (need Go >= 1.24 on PATH or in /usr/local/go/bin)" >&2
  exit 1
fi

tmp="$bin.partial.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
echo "build-kustomize: building kustomize v$version with $(go version) (a cold build takes a minute or two)" >&2
# Outside any module, so that `go install pkg@version` uses kustomize's own requirements.
cd "$tmp"
CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$tmp" GOFLAGS=-mod=readonly \
  go install -ldflags "-X sigs.k8s.io/kustomize/api/provenance.version=v$version" "sigs.k8s.io/kustomize/kustomize/v5@v$version"
mkdir -p "$bin"
mv -f "$tmp/kustomize" "$bin/kustomize"
echo "$bin/kustomize"
