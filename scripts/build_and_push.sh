#!/usr/bin/env bash
# Build the NCF image (CPU or GPU flavour) for linux/amd64 and push it to ECR; print its URI.
#
#   scripts/build_and_push.sh [--flavor cpu|gpu] [--region REGION] [--repository NAME]
#                             [--tag TAG] [--base-image IMAGE] [--dry-run]
#
# The account comes from `aws sts get-caller-identity`; the ECR repository is created
# (tagged project=ncf-sagemaker, scan on push) if it is missing; Docker logs in with
# `aws ecr get-login-password`. `docker buildx build --platform linux/amd64` cross-builds
# on an Apple Silicon laptop too (SageMaker instances are x86_64). --dry-run prints the
# commands instead of running them. The last line of the output is the image URI, so
#   export NCF_IMAGE_URI=$(scripts/build_and_push.sh | tail -n 1)
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Options:
  --flavor cpu|gpu     image flavour (default cpu; gpu for ml.g4dn / ml.g5)
  --region REGION      AWS region (default: NCF_REGION, AWS_REGION, then the AWS CLI's)
  --repository NAME    ECR repository (default ncf-sagemaker)
  --tag TAG            image tag (default: the flavour)
  --base-image IMAGE   passed as --build-arg BASE_IMAGE (default: the Dockerfile's)
  --platform PLATFORM  default linux/amd64
  --dry-run            print the commands, run nothing (the account lookup still runs
                       when credentials allow; otherwise 123456789012 stands in)
  -h, --help           this help
EOF
}

flavor=cpu
region="${NCF_REGION:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}"
repository=ncf-sagemaker
tag=""
base_image=""
platform=linux/amd64
dry_run=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --flavor) flavor="${2:?--flavor needs cpu or gpu}"; shift 2 ;;
    --region) region="${2:?--region needs a value}"; shift 2 ;;
    --repository) repository="${2:?--repository needs a value}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    --base-image) base_image="${2:?--base-image needs a value}"; shift 2 ;;
    --platform) platform="${2:?--platform needs a value}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

case "$flavor" in cpu|gpu) ;; *) echo "error: --flavor must be cpu or gpu, got '$flavor'" >&2; exit 2 ;; esac
if [[ ! "$repository" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]]; then
  echo "error: malformed repository name '$repository' (lowercase letters, digits, . _ - /)" >&2
  exit 2
fi
tag="${tag:-$flavor}"
if [[ ! "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  echo "error: malformed tag '$tag'" >&2; exit 2
fi
command -v aws >/dev/null || { echo "error: the AWS CLI is not installed (https://aws.amazon.com/cli/)" >&2; exit 2; }
if [[ -z "$region" ]]; then
  region="$(aws configure get region 2>/dev/null || true)"
fi
if [[ ! "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]]; then
  echo "error: no or malformed AWS region '${region}': pass --region or set NCF_REGION" >&2
  exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Print a command; run it unless this is a dry run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $dry_run == 0 ]]; then "$@"; fi
}

if ! account="$(aws sts get-caller-identity --region "$region" --query Account --output text 2>/tmp/ncf-sts.err)"; then
  if [[ $dry_run == 1 ]]; then
    account=123456789012
  else
    echo "error: no usable AWS credentials ($(tail -n 1 /tmp/ncf-sts.err)): run 'aws configure' or 'aws sso login'" >&2
    exit 2
  fi
fi
# ECR's domain follows the partition: amazonaws.com.cn in the China regions.
domain=amazonaws.com
if [[ "$region" == cn-* ]]; then domain=amazonaws.com.cn; fi
registry="${account}.dkr.ecr.${region}.${domain}"
image_uri="${registry}/${repository}:${tag}"

echo "+ aws sts get-caller-identity --region $region --query Account --output text  # -> $account"
if [[ $dry_run == 1 ]] || ! aws ecr describe-repositories --region "$region" \
    --repository-names "$repository" >/dev/null 2>&1; then
  if [[ $dry_run == 1 ]]; then echo "# if the repository is missing:"; fi
  run aws ecr create-repository --region "$region" --repository-name "$repository" \
    --image-scanning-configuration scanOnPush=true \
    --tags Key=project,Value=ncf-sagemaker
fi

printf '+ aws ecr get-login-password --region %q | docker login --username AWS --password-stdin %q\n' \
  "$region" "$registry"
if [[ $dry_run == 0 ]]; then
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
fi

build_args=(--build-arg "FLAVOR=$flavor")
if [[ -n "$base_image" ]]; then build_args+=(--build-arg "BASE_IMAGE=$base_image"); fi
# --load keeps a local ncf-sagemaker:<tag> for `ncf ... --local`; --provenance=false because
# SageMaker pulls plain single-platform manifests, not attestation indexes.
local_image="${repository##*/}:${tag}"
run docker buildx build --platform "$platform" --provenance=false --load "${build_args[@]}" \
  --tag "$local_image" "$repo_root"
run docker tag "$local_image" "$image_uri"
run docker push "$image_uri"

echo "$image_uri"
