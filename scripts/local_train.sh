#!/usr/bin/env bash
# local_train.sh: run a training job in the image with Docker, as SageMaker would, on a local
# folder in the SageMaker layout (mounted as /opt/ml). No AWS account needed.
#
# Usage: scripts/local_train.sh [options]
#   --image IMAGE         the image (default ncf-sagemaker:cpu; built by local_build.sh if missing)
#   --opt-ml DIR          the folder mounted as /opt/ml (default local/opt_ml)
#   --data PATH           copy this file or folder into DIR/input/data/train/ first
#   --synthetic           write synthetic interactions into DIR/input/data/train/ first
#   --train-uri S3_URI    read the train channel from S3 instead (s3://bucket/prefix/): AWS
#                         credentials come from the environment (AWS_ACCESS_KEY_ID, ...,
#                         AWS_PROFILE with ~/.aws mounted read-only) and AWS_ENDPOINT_URL, if
#                         set, points at an S3-compatible server (MinIO, moto, LocalStack)
#   --hp NAME=VALUE       a hyperparameter (repeatable), into DIR/input/config/hyperparameters.json
# Results: DIR/model (the model), DIR/output/data (metrics.json, learning curve),
# DIR/output/failure (why a job failed). The exit code is the job's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
image=ncf-sagemaker:cpu
opt_ml=local/opt_ml
data=""
synthetic=0
train_uri=""
hyperparameters=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --image) image=$2; shift 2 ;;
    --opt-ml) opt_ml=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --synthetic) synthetic=1; shift ;;
    --train-uri) train_uri=$2; shift 2 ;;
    --hp) hyperparameters+=("$2"); shift 2 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "local_train.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

docker image inspect "$image" >/dev/null 2>&1 || ./scripts/local_build.sh --tag "$image" >/dev/null
mkdir -p "$opt_ml/input/config" "$opt_ml/input/data/train"
opt_ml=$(cd "$opt_ml" && pwd)

if [[ -n $data ]]; then
  cp -r "$data" "$opt_ml/input/data/train/"
fi
if [[ $synthetic == 1 ]]; then
  [[ -x .venv/bin/python ]] || ./scripts/setup.sh
  .venv/bin/python -c 'import sys; from training.synthetic import make_interactions
make_interactions().to_csv(sys.argv[1], index=False)' "$opt_ml/input/data/train/synthetic.csv"
fi
if [[ ${#hyperparameters[@]} -gt 0 || ! -f $opt_ml/input/config/hyperparameters.json ]]; then
  # SageMaker passes every value as a string; so do we.
  python3 -c 'import json, sys
pairs = (arg.split("=", 1) for arg in sys.argv[2:])
json.dump({name: value for name, value in pairs}, open(sys.argv[1], "w"), indent=2)' \
    "$opt_ml/input/config/hyperparameters.json" "${hyperparameters[@]}"
fi

run=(docker run --rm -v "$opt_ml:/opt/ml")
if [[ -n $train_uri ]]; then
  run+=(-e "SM_CHANNEL_TRAIN=$train_uri")
  # `-e NAME` passes the host's value when it is set, and nothing otherwise.
  for name in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION \
    AWS_DEFAULT_REGION AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3; do
    [[ -n ${!name:-} ]] && run+=(-e "$name")
  done
  [[ -d $HOME/.aws ]] && run+=(-v "$HOME/.aws:/root/.aws:ro")
  # An endpoint on this machine's loopback is reachable from the container on the host network.
  if [[ ${AWS_ENDPOINT_URL:-}${AWS_ENDPOINT_URL_S3:-} =~ ://(localhost|127\.) ]]; then
    run+=(--network host)
  fi
fi
echo "local_train.sh: ${run[*]} $image train" >&2
status=0
"${run[@]}" "$image" train || status=$?
if [[ $status == 0 ]]; then
  echo "local_train.sh: model in $opt_ml/model, report in $opt_ml/output/data" >&2
else
  echo "local_train.sh: training failed (exit $status): $(head -c 1024 "$opt_ml/output/failure" 2>/dev/null)" >&2
fi
exit "$status"
