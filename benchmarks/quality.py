"""Recommendation quality of several configurations side by side, in one run, on real data.

Each run is the real ``train`` program (a subprocess, as SageMaker runs it) on
SageMaker channels written to a temporary directory; hyperparameters are chosen
on the validation split inside the job and the test figure is read once from
``metrics.json``. The popularity baseline comes from the same reports.

Datasets (``../shared/data``, never copied into the repository):

- ``ml-1m-ncf``: the NCF paper's split of MovieLens-1M with its exact 99 test
  negatives per user.
- ``ml-1m-half``: the explicit ratings of MovieLens-1M users 1..2999 with time,
  as implicit feedback, in a time-ordered leave-last-out protocol built here:
  each user's latest interaction (ties broken at random, seed 0) is the test
  item, ranked against 99 negatives drawn (seed 0) from the items the user never
  rated; everything else is training data.

Usage:
  .venv/bin/python benchmarks/quality.py --dataset ml-1m-half [--run NAME:hp=v,hp=v ...]
  (default runs: defaults, ease, ials, gmf-untuned)
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
from train_ml1m import write_channels as write_ncf_channels
from train_ml1m import write_config

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_RUNS = (
    "defaults:",
    "ease:model_type=ease",
    "ials:model_type=ials",
    "gmf-untuned:model_type=gmf,tuning=off",
)
NEGATIVES = 99


def write_half_channels(base: Path) -> None:
    """The ml-1m-half leave-last-out protocol as train / test / test_negatives channels."""
    ratings = pd.read_csv(
        DATA / "ml-1m-half" / "ratings.dat",
        sep="::",
        engine="python",
        header=None,
        names=["user_id", "item_id", "rating", "timestamp"],
    )
    rng = np.random.default_rng(0)
    order = np.lexsort((rng.random(len(ratings)), ratings["timestamp"].to_numpy()))
    ordered = ratings.iloc[order]
    is_last = ~ordered.duplicated("user_id", keep="last")
    test, train = ordered[is_last.to_numpy()], ordered[~is_last.to_numpy()]
    items = np.sort(ratings["item_id"].unique())
    rated = ratings.groupby("user_id")["item_id"].agg(set)
    rows = []
    for user, item in zip(test["user_id"], test["item_id"], strict=True):
        candidates = np.setdiff1d(items, np.fromiter(rated[user], dtype=items.dtype))
        drawn = rng.choice(candidates, size=NEGATIVES, replace=False)
        rows.append((str(user), str(item), " ".join(map(str, drawn))))
    channels = {
        "train": train[["user_id", "item_id", "timestamp"]],
        "test": test[["user_id", "item_id"]],
        "test_negatives": pd.DataFrame(rows, columns=["user_id", "item_id", "negative_item_ids"]),
    }
    for channel, frame in channels.items():
        directory = base / "input" / "data" / channel
        directory.mkdir(parents=True)
        frame.astype(str).to_csv(directory / "part-0.csv", index=False)


WRITERS = {"ml-1m-ncf": write_ncf_channels, "ml-1m-half": write_half_channels}


def run(dataset: str, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """One ``train`` run; its test figures, popularity's, the chosen family and the time."""
    with tempfile.TemporaryDirectory(prefix="ncf-quality-") as scratch:
        base = Path(scratch)
        WRITERS[dataset](base)
        write_config(base, hyperparameters)
        started = time.perf_counter()
        process = subprocess.run(
            [sys.executable, "-m", "training"],
            env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            print(process.stdout[-3000:], process.stderr[-3000:], sep="\n")
            raise SystemExit(f"train failed with exit status {process.returncode}")
        for line in process.stdout.splitlines():
            if line.startswith(("trial=", "search chose", "final")):
                print("   ", line, flush=True)
        report = json.loads((base / "output" / "data" / "metrics.json").read_text())
    popularity = report["baselines"]["popularity"]["test"]
    return {
        "hr": report["test"]["hr"],
        "ndcg": report["test"]["ndcg"],
        "val_hr": report["validation"].get("hr", float("nan")),
        "popularity_hr": popularity["hr"],
        "popularity_ndcg": popularity["ndcg"],
        "family": report["chosen"]["model_type"],
        "trials": 0 if report["search"] is None else len(report["search"]["trials"]),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(WRITERS), default="ml-1m-half")
    parser.add_argument("--run", action="append", help="NAME:hp=value,hp=value (repeatable)")
    args = parser.parse_args()
    results = []
    for spec in args.run or DEFAULT_RUNS:
        name, _, assignments = spec.partition(":")
        hyperparameters = dict(a.split("=", 1) for a in assignments.split(",") if a)
        print(f"== {name} {hyperparameters}", flush=True)
        results.append((name, hyperparameters, run(args.dataset, hyperparameters)))
    print(f"\n{args.dataset}: test figures, one run each, on {os.cpu_count()} CPUs\n")
    print("| run | hyperparameters | family | HR@10 | NDCG@10 | val HR@10 | trials | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, hps, figures in results:
        print(
            f"| {name} | {hps or 'defaults'} | {figures['family']} | {figures['hr']:.4f} "
            f"| {figures['ndcg']:.4f} | {figures['val_hr']:.4f} | {figures['trials']} "
            f"| {figures['seconds']:.0f} |"
        )
    popularity = results[0][2]
    print(
        f"| popularity | | | {popularity['popularity_hr']:.4f} "
        f"| {popularity['popularity_ndcg']:.4f} | | | |"
    )


if __name__ == "__main__":
    main()
