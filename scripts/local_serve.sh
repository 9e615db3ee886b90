#!/usr/bin/env bash
# local_serve.sh: serve a trained model from the image with Docker, as a SageMaker endpoint
# would (the model directory mounted read-only as /opt/ml/model, port 8080 inside).
#
# Usage: scripts/local_serve.sh [--image IMAGE] [--model-dir DIR] [--port PORT] [--detach]
#   --image      the image (default ncf-sagemaker:cpu; built by local_build.sh if missing)
#   --model-dir  a model directory written by `train` (default local/opt_ml/model)
#   --port       the host port (default 8080)
#   --detach     run in the background and print the container name; stop it with
#                `docker stop NAME` (SIGTERM: in-flight requests finish first)
# Then:  curl -s localhost:8080/ping
#        curl -s localhost:8080/invocations -H 'Content-Type: application/json' -d '{"user_id": "u1", "k": 5}'
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
image=ncf-sagemaker:cpu
model_dir=local/opt_ml/model
port=8080
detach=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --image) image=$2; shift 2 ;;
    --model-dir) model_dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --detach) detach=1; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "local_serve.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -f $model_dir/metadata.json ]] || {
  echo "local_serve.sh: no model in $model_dir (train one: scripts/local_train.sh --synthetic)" >&2
  exit 1
}
model_dir=$(cd "$model_dir" && pwd)
docker image inspect "$image" >/dev/null 2>&1 || ./scripts/local_build.sh --tag "$image" >/dev/null

run=(docker run --rm -p "$port:8080" -v "$model_dir:/opt/ml/model:ro")
if [[ $detach == 1 ]]; then
  name=ncf-serve-$port
  "${run[@]}" -d --name "$name" "$image" serve >/dev/null
  echo "local_serve.sh: serving $model_dir on http://localhost:$port (docker stop $name)" >&2
  echo "$name"
else
  echo "local_serve.sh: serving $model_dir on http://localhost:$port (Ctrl-C stops)" >&2
  exec "${run[@]}" "$image" serve
fi
