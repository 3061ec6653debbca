#!/bin/sh
# Prints what `kubectl apply -k DIR` would apply, rendered by the kustomize that the tests use
# (built once by scripts/build-kustomize.sh), e.g. to review or diff it, or to apply with
# `kubectl apply -f -` where kubectl's built-in kustomize is older.
#   scripts/render-deploy.sh deploy/injector
set -eu
if [ $# -ne 1 ] || [ ! -f "$1/kustomization.yaml" ]; then
  echo "usage: scripts/render-deploy.sh DIR   (a folder of deploy/ with a kustomization.yaml)" >&2
  exit 2
fi
kustomize=$("$(dirname "$0")/build-kustomize.sh")
exec "$kustomize" build "$1"
