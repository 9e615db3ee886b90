"""Training cost and memory against data size, on MovieLens-20M-shaped synthetic data.

For each ``--sizes`` entry (interactions), draws power-law interactions with
``training.synthetic.make_power_law_interactions`` among ML-20M's 138,493 users
and 26,744 items at every size (``--scale-catalog`` shrinks both in proportion
to the interactions instead), holds out one interaction per user as the test channel,
writes Parquet channels to a temporary directory and runs the real training job
(``python -m training``, ``model_type=gmf``, ``tuning=off``, ``epochs=1`` unless ``--hp``
says otherwise) once per ``--modes`` entry (``sparse``: the default
lazy updates; ``dense``: ``sparse_updates=false``) on the same files. Reported
per run: training samples/s (training examples of the epochs run / training
seconds), seconds per phase, and the job's peak RSS (``ru_maxrss`` of that child
process from ``os.wait4``: data loading, negative sampling, evaluation and
export included).

Usage: .venv/bin/python benchmarks/train_scale.py --sizes 1e6,5e6 --modes sparse,dense
       [--hp epochs=1 ...] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.synthetic import make_power_law_interactions

ML20M_USERS, ML20M_ITEMS, ML20M_INTERACTIONS = 138_493, 26_744, 20_000_263
MODES = {"sparse": {"sparse_updates": "true"}, "dense": {"sparse_updates": "false"}}


def write_channels(base: Path, interactions: int, scale_catalog: bool, seed: int) -> dict[str, int]:
    """Train and test channels (one held-out interaction per user) under ``base``."""
    share = interactions / ML20M_INTERACTIONS if scale_catalog else 1.0
    num_users = max(100, round(ML20M_USERS * share))
    num_items = max(100, round(ML20M_ITEMS * share))
    users, items = make_power_law_interactions(
        num_users=num_users,
        num_items=num_items,
        num_interactions=interactions,
        min_per_user=min(20, interactions // num_users),
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    # One random interaction per user (users are sorted) goes to the test channel.
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    lengths = np.diff(np.r_[starts, len(users)])
    test_rows = starts + (rng.random(len(starts)) * lengths).astype(np.int64)
    is_test = np.zeros(len(users), dtype=bool)
    is_test[test_rows] = True
    for channel, rows in (("train", ~is_test), ("test", is_test)):
        directory = base / "input" / "data" / channel
        directory.mkdir(parents=True)
        pd.DataFrame({"user_id": users[rows], "item_id": items[rows]}).to_parquet(
            directory / "part-0.parquet", index=False
        )
    return {"users": num_users, "items": num_items, "interactions": len(users)}


def write_config(base: Path, hyperparameters: dict[str, str]) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channels = {c: {"TrainingInputMode": "File"} for c in ("train", "test")}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )


def run_job(base: Path, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """One training job on the channels under ``base``: its report and peak RSS."""
    write_config(base, hyperparameters)
    for stale in ("model", "output", "checkpoints"):
        subprocess.run(["rm", "-rf", str(base / stale)], check=True)
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    started = time.perf_counter()
    with open(base / "job.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "training"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        print((base / "job.log").read_text()[-4000:])
        raise SystemExit(f"train failed with status {os.waitstatus_to_exitcode(status)}")
    report = json.loads((base / "output" / "data" / "metrics.json").read_text())
    config, data, timings = report["config"], report["data"], report["timings"]
    samples = data["train_interactions"] * (1 + config["num_negatives"]) * len(report["history"])
    return {
        "job_seconds": seconds,
        "peak_rss_gb": usage.ru_maxrss / 1e6,  # kB on Linux
        "samples_per_second": samples / timings["training_seconds"],
        "epoch_seconds": [round(r["epoch_seconds"], 1) for r in report["history"]],
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "test": report.get("test", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,5e6,10e6,20e6")
    parser.add_argument("--modes", default="sparse,dense")
    parser.add_argument("--hp", action="append", default=[], help="hyperparameter name=value")
    parser.add_argument("--scale-catalog", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # The default GMF, one epoch, no in-job search (its trials would time other families).
    base_hp = {
        "epochs": "1",
        "model_type": "gmf",
        "tuning": "off",
        **dict(item.split("=", 1) for item in args.hp),
    }
    results = []
    for size in (int(float(s)) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="ncf-scale-") as scratch:
            base = Path(scratch)
            shape = write_channels(base, size, args.scale_catalog, args.seed)
            for mode in args.modes.split(","):
                result = {**shape, "mode": mode, **run_job(base, {**base_hp, **MODES[mode]})}
                results.append(result)
                print(json.dumps(result), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
