#!/usr/bin/env bash
# local_build.sh: build the image for local Docker runs (no registry, no AWS).
#
# Usage: scripts/local_build.sh [--flavor cpu|gpu] [--tag IMAGE]
#   --flavor  cpu (tensorflow-cpu, default) or gpu (TensorFlow with CUDA from pip)
#   --tag     image name (default ncf-sagemaker:FLAVOR)
#   BASE_IMAGE=...  another base with python3.11 + venv (default: the Dockerfile's,
#                   python:3.11-slim-bookworm; local/python:3.11 on machines without a registry)
# Prints the image name on its last line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
flavor=cpu
tag=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --flavor) flavor=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "local_build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $flavor == cpu || $flavor == gpu ]] || { echo "local_build.sh: --flavor is cpu or gpu" >&2; exit 2; }
tag=${tag:-ncf-sagemaker:$flavor}

args=(--build-arg "FLAVOR=$flavor" -t "$tag")
[[ -n ${BASE_IMAGE:-} ]] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
echo "local_build.sh: docker build ${args[*]} ." >&2
docker build "${args[@]}" . >&2
echo "$tag"
