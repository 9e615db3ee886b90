"""How long a full garbage collection takes in a serving worker, before and after ``gc.freeze``.

Builds the app as a worker does (``load_recommender`` then ``create_app``), times
``gc.collect()`` twice, freezes, and times it again.

Usage: .venv/bin/python benchmarks/gc_pause.py [MODEL_DIR]   (default benchmarks/results/ml1m-model)
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

from inference.app import create_app, load_recommender
from inference.settings import ServingSettings


def timed_collect() -> float:
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1e3


def main() -> None:
    default = Path(__file__).resolve().parent / "results" / "ml1m-model"
    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    recommender, error = load_recommender(model_dir)
    if recommender is None:
        raise SystemExit(error)
    create_app(ServingSettings(model_dir=model_dir), recommender)
    print(f"tracked objects: {len(gc.get_objects())}")
    print(
        f"full collection before freeze: {timed_collect():.1f} ms, again {timed_collect():.1f} ms"
    )
    gc.freeze()
    print(f"full collection after freeze: {timed_collect():.1f} ms")


if __name__ == "__main__":
    main()
