#!/usr/bin/env bash
# demo.sh: set everything up and run the whole product once, on this machine: no Docker, no AWS.
#
#   1. synthetic interactions (training/synthetic.py) in the SageMaker layout, local/demo/opt_ml
#   2. the `train` program on it, exactly as `docker run IMAGE train` runs it (SAGEMAKER_BASE_DIR)
#   3. the `serve` program on a free port, as `docker run IMAGE serve` runs it; wait for /ping
#   4. recommendations and similar items from POST /invocations, then a clean stop (SIGTERM)
#
# Usage: ./scripts/demo.sh      (about a minute after setup; setup takes a few on a fresh machine)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n== %s\n' "$*"; }

step "setup (scripts/setup.sh)"
./scripts/setup.sh
python=.venv/bin/python
opt_ml=$PWD/local/demo/opt_ml
rm -rf "$opt_ml"

step "1/4 synthetic interactions -> $opt_ml/input/data/train/"
"$python" - "$opt_ml" <<'PY'
import json, sys
from pathlib import Path
from training.synthetic import make_interactions

base = Path(sys.argv[1])
frame = make_interactions(num_users=1000, num_items=300, interactions_per_user=25, seed=7)
(base / "input/data/train").mkdir(parents=True)
frame.to_csv(base / "input/data/train/interactions.csv", index=False)
(base / "input/config").mkdir(parents=True)
# The defaults (training/config.py: the search picks the family and its settings on the
# validation split, then refits), with a demo-sized search budget. SageMaker passes strings.
(base / "input/config/hyperparameters.json").write_text(
    json.dumps({"tuning_trials": "8", "tuning_budget": "60"})
)
print(f"{len(frame):,} interactions of {frame.user_id.nunique():,} users with "
      f"{frame.item_id.nunique():,} items; first rows:")
print(frame.head(3).to_string(index=False))
PY

step "2/4 training: .venv/bin/train (SAGEMAKER_BASE_DIR=$opt_ml)"
SAGEMAKER_BASE_DIR=$opt_ml .venv/bin/train 2>&1 | grep -E -v "^(WARNING: All log messages|I0000|E0000|W0000)|oneDNN|cpu_feature_guard|rebuild TensorFlow|AVX" || true
[[ -f $opt_ml/model/metadata.json ]] || { echo "demo.sh: training failed: $(cat "$opt_ml/output/failure" 2>/dev/null)" >&2; exit 1; }
echo "model  ($opt_ml/model): $(cd "$opt_ml/model" && echo *)"
echo "report ($opt_ml/output/data): $(cd "$opt_ml/output/data" && echo *)"

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "3/4 serving: .venv/bin/serve on http://127.0.0.1:$port"
SAGEMAKER_BASE_DIR=$opt_ml SAGEMAKER_BIND_TO_PORT=$port SAGEMAKER_MODEL_SERVER_WORKERS=1 \
  .venv/bin/serve >local/demo/serve.log 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"
    wait "$server" 2>/dev/null || true
  fi
}
trap stop_server EXIT
for _ in $(seq 300); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/ping" && break
  kill -0 "$server" 2>/dev/null || { cat local/demo/serve.log >&2; exit 1; }
  sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$port/ping" || { cat local/demo/serve.log >&2; exit 1; }
echo "GET /ping -> 200"

step "4/4 recommendations: POST /invocations"
"$python" - "http://127.0.0.1:$port" "$opt_ml" <<'PY'
import json, sys, urllib.request
from pathlib import Path
import pandas as pd

url, base = sys.argv[1], Path(sys.argv[2])
seen = pd.read_csv(base / "input/data/train/interactions.csv")
instances = [
    {"user_id": "u1", "k": 5},
    {"user_id": "u2", "k": 5},
    {"user_id": "someone-new", "k": 5},
    {"item_id": "i3", "k": 5},
]
body = json.dumps({"instances": instances})
print(f"request: {body}")
request = urllib.request.Request(
    f"{url}/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
)
with urllib.request.urlopen(request, timeout=30) as response:
    predictions = json.loads(response.read())["predictions"]

def listing(items):
    return ", ".join(f"{item['item_id']} ({item['score']:.2f})" for item in items)


def cluster(item_id):
    # The generator's latent taste clusters: item iN belongs to cluster N mod 4.
    return int(item_id[1:]) % 4


def share_in(items, taste):
    return f"{sum(cluster(item) == taste for item in items)}/{len(items)}"


for instance, prediction in zip(instances, predictions):
    if "user_id" in instance:
        history = seen.loc[seen.user_id == instance["user_id"], "item_id"].tolist()
        recommended = [item["item_id"] for item in prediction["items"]]
        if not history:
            print(f"\nuser {instance['user_id']}: never seen, so the most popular items "
                  f"(fallback={prediction.get('fallback')!r}): {listing(prediction['items'])}")
            continue
        taste = pd.Series([cluster(item) for item in history]).mode()[0]
        print(f"\nuser {instance['user_id']}: seen {', '.join(history[:6])}, ... "
              f"({share_in(history, taste)} in taste cluster {taste})")
        print(f"  recommended: {listing(prediction['items'])} "
              f"({share_in(recommended, taste)} in cluster {taste})")
    else:
        similar = [item["item_id"] for item in prediction["items"]]
        taste = cluster(instance["item_id"])
        print(f"\nitems similar to {instance['item_id']} (cluster {taste}): "
              f"{listing(prediction['items'])} ({share_in(similar, taste)} in cluster {taste})")
report = json.loads((base / "output/data/metrics.json").read_text())
best = report["history"][report["best_epoch"] - 1]
print(f"\nvalidation at the best epoch ({report['best_epoch']}): HR@10 {best['hr']:.3f}, "
      f"NDCG@10 {best['ndcg']:.3f} (report: {base / 'output/data'})")
PY

step "stopping the server (SIGTERM)"
stop_server
trap - EXIT
echo "done. Data, model and report: $opt_ml ; server log: local/demo/serve.log"
