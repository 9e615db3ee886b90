"""Top-10 latency with and without re-ranking (diversity, popularity penalty), in process.

Loads a model directory into ``inference.recommender.Recommender`` and times one
request at a time for random known users, interleaving the variants round by
round so machine noise hits them alike. Two layers are timed:

- ``recommend``: ``Recommender.recommend([request])`` (scoring, masking, top-k,
  re-ranking, building the response dict);
- ``wsgi``: a whole ``POST /invocations`` through the Flask app's test client
  (JSON decode, validation, the above, JSON encode), no sockets.

Usage: .venv/bin/python benchmarks/serve_rerank.py [--model-dir DIR] [--rounds 2000]
(default model: ``benchmarks/results/ml1m-model``, written by ``benchmarks/train_ml1m.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # as serve sets it for its workers

import numpy as np  # noqa: E402

from inference.app import create_app  # noqa: E402
from inference.instances import RecommendRequest  # noqa: E402
from inference.recommender import Recommender  # noqa: E402
from inference.settings import ServingSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, float]] = {
    "plain": {},
    "diversity 0.25": {"diversity": 0.25},
    "diversity 0.5": {"diversity": 0.5},
    "diversity 1": {"diversity": 1.0},
    "popularity_penalty 0.5": {"popularity_penalty": 0.5},
    "diversity 0.5 + penalty 0.5": {"diversity": 0.5, "popularity_penalty": 0.5},
}


def request_for(user: str, k: int, extra: dict[str, float]) -> RecommendRequest:
    return RecommendRequest(
        user_id=user,
        k=k,
        diversity=extra.get("diversity"),
        popularity_penalty=extra.get("popularity_penalty"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "benchmarks/results/ml1m-model")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    recommender = Recommender.from_model_dir(args.model_dir)
    client = create_app(ServingSettings(model_dir=args.model_dir), recommender).test_client()
    rng = np.random.default_rng(0)
    users = [str(user) for user in rng.choice(recommender.user_ids, size=args.rounds)]
    timings: dict[tuple[str, str], list[float]] = {
        (layer, name): [] for layer in ("recommend", "wsgi") for name in VARIANTS
    }
    for extra in VARIANTS.values():  # warm-up
        recommender.recommend([request_for(users[0], args.k, extra)])
    for user in users:
        for name, extra in VARIANTS.items():
            request = request_for(user, args.k, extra)
            started = time.perf_counter()
            recommender.recommend([request])
            timings["recommend", name].append(time.perf_counter() - started)
            body = json.dumps({"user_id": user, "k": args.k, **extra})
            started = time.perf_counter()
            response = client.post("/invocations", data=body, content_type="application/json")
            timings["wsgi", name].append(time.perf_counter() - started)
            assert response.status_code == 200, response.data

    print(
        f"model {args.model_dir.name}: {recommender.metadata.model_type}, "
        f"{len(recommender.user_ids)} users x {recommender.num_items} items; k={args.k}; "
        f"{args.rounds} requests per variant; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print("| layer | variant | p50 µs | p99 µs | mean µs | p50 vs plain |")
    print("|---|---|---|---|---|---|")
    for layer in ("recommend", "wsgi"):
        plain_p50 = float(np.percentile(timings[layer, "plain"], 50))
        for name in VARIANTS:
            seconds = np.array(timings[layer, name]) * 1e6
            p50 = float(np.percentile(seconds, 50))
            print(
                f"| {layer} | {name} | {p50:,.0f} | {np.percentile(seconds, 99):,.0f} | "
                f"{seconds.mean():,.0f} | {p50 / (plain_p50 * 1e6):.2f}x |"
            )


if __name__ == "__main__":
    main()
