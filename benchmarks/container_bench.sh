#!/usr/bin/env bash
# container_bench.sh: the image's size, its rebuild time after a code-only change, and the
# time from `docker run IMAGE serve` to the first 200 on /ping (BENCHMARKS.md, "container").
#
# Usage: benchmarks/container_bench.sh [--flavor cpu|gpu] [--runs N]
#   BASE_IMAGE (default: local/python:3.11 where it exists, else python:3.11-slim-bookworm)
# Targets: CPU image <= 1.5 GB; code-only rebuild <= 30 s; start to /ping 200 <= 10 s.
# Writes benchmarks/results/container-<flavor>.json and prints a summary. Needs a Docker
# engine (../shared/tools/docker-here here) and the project's .venv (scripts/setup.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
flavor=cpu
runs=5
while [[ $# -gt 0 ]]; do
  case $1 in
    --flavor) flavor=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z ${BASE_IMAGE:-} ]]; then
  if docker image inspect local/python:3.11 >/dev/null 2>&1; then
    BASE_IMAGE=local/python:3.11
  else
    BASE_IMAGE=python:3.11-slim-bookworm
  fi
fi
image=ncf-sagemaker:bench-$flavor
work=$(mktemp -d)
server=""
cleanup() {
  [[ -n $server ]] && docker rm -f "$server" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "container_bench: $*" >&2; }

# The build context as `docker build` sees it, copied so the code-only change below never
# touches the working tree.
git ls-files -z --cached --others --exclude-standard -- Dockerfile .dockerignore container training inference |
  xargs -0 cp --parents -t "$work"
mkdir -p "$work/context" && mv "$work"/{Dockerfile,.dockerignore,container,training,inference} "$work/context/"

build() {
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "FLAVOR=$flavor" \
    -t "$image" "$work/context" 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e '^ *$' >&2 || true
}

log "building $image on $BASE_IMAGE (FLAVOR=$flavor; cached layers are reused)"
started=$(now); build; first_build_s=$(elapsed "$started" "$(now)")
size_bytes=$(docker image inspect --format '{{.Size}}' "$image")

log "rebuilding after a code-only change (a comment appended to training/__init__.py)"
echo "# container_bench: code-only change $(date +%s%N)" >>"$work/context/training/__init__.py"
started=$(now); build; rebuild_s=$(elapsed "$started" "$(now)")

log "training a small model in the container (synthetic data, SageMaker layout)"
opt_ml=$work/opt_ml
.venv/bin/python - "$opt_ml" <<'PY'
import json, sys
from pathlib import Path
from training.synthetic import make_interactions
base = Path(sys.argv[1])
(base / "input/data/train").mkdir(parents=True)
(base / "input/config").mkdir(parents=True)
make_interactions().to_csv(base / "input/data/train/part-0.csv", index=False)
(base / "input/config/hyperparameters.json").write_text(json.dumps({"epochs": "2"}))
PY
started=$(now)
docker run --rm -v "$opt_ml:/opt/ml" "$image" train >"$work/train.log" 2>&1 ||
  { cat "$work/train.log" >&2; exit 1; }
train_s=$(elapsed "$started" "$(now)")

port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ping_times=()
for run in $(seq "$runs"); do
  server=ncf-bench-serve-$$-$run
  started=$(now)
  docker run -d --name "$server" -p "127.0.0.1:$port:8080" -v "$opt_ml/model:/opt/ml/model:ro" \
    "$image" serve >/dev/null
  until curl -fs -o /dev/null "http://127.0.0.1:$port/ping"; do
    sleep 0.05
    if [[ $(elapsed "$started" "$(now)" | cut -d. -f1) -ge 60 ]]; then
      docker logs "$server" >&2; exit 1
    fi
  done
  ping_times+=("$(elapsed "$started" "$(now)")")
  docker rm -f "$server" >/dev/null; server=""
done
sorted=$(printf '%s\n' "${ping_times[@]}" | sort -n)
ping_median=$(echo "$sorted" | sed -n "$(((runs + 1) / 2))p")
ping_max=$(echo "$sorted" | tail -n 1)

mkdir -p benchmarks/results
.venv/bin/python - "$flavor" "$BASE_IMAGE" "$size_bytes" "$first_build_s" "$rebuild_s" "$train_s" \
  "$ping_median" "$ping_max" "${ping_times[*]}" <<'PY'
import json, platform, subprocess, sys
flavor, base, size, first, rebuild, train, median, worst, runs = sys.argv[1:]
engine = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                        capture_output=True, text=True).stdout.strip()
result = {
    "flavor": flavor, "base_image": base, "docker_engine": engine,
    "machine": f"{platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPUs",
    "image_size_bytes": int(size), "image_size_gb": round(int(size) / 1e9, 3),
    "build_seconds": float(first), "code_only_rebuild_seconds": float(rebuild),
    "train_seconds_2_epochs_synthetic": float(train),
    "start_to_ping_seconds": {"median": float(median), "max": float(worst),
                              "runs": [float(t) for t in runs.split()]},
    "targets": {"image_size_gb": 1.5, "code_only_rebuild_seconds": 30, "start_to_ping_seconds": 10},
}
path = f"benchmarks/results/container-{flavor}.json"
open(path, "w").write(json.dumps(result, indent=2) + "\n")
print(f"""image {flavor} on {base}: {result['image_size_gb']:.2f} GB (target <= 1.5 GB for cpu)
code-only rebuild: {float(rebuild):.1f} s (target <= 30 s); first build here: {float(first):.1f} s
docker run ... serve -> /ping 200: median {float(median):.2f} s, max {float(worst):.2f} s over {len(runs.split())} runs (target <= 10 s)
docker run ... train (2 epochs, synthetic): {float(train):.1f} s
written: {path}""")
PY
