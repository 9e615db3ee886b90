"""NCF on MovieLens-1M with the paper's exact split and test negatives, through `train`.

Converts ``../shared/data/ml-1m-ncf`` into SageMaker channels in a temporary
directory (never into the repository), runs the real ``train`` with
default hyperparameters (plus any ``--hp name=value``), and prints HR@10,
NDCG@10, the wall time from this process's start and training samples/s. The
trained model directory is copied to ``benchmarks/results/ml1m-model`` (git
ignores it) for the serving benchmark.

With ``--baseline`` it also runs a straightforward Keras NCF as the paper's
code does (Python loop drawing negatives per positive, batch 256; the same
model type and sizes as the run) on the same data for ``--baseline-samples``
training samples and reports the speed ratio.

With ``--workers N`` it runs ``N`` ``train`` processes on this machine as the
``N`` hosts of one multi-worker job (MultiWorkerMirroredStrategy over gRPC on
localhost ports, ``TF_CONFIG`` set per process) and reports the chief's figures,
samples/s per worker and the seconds per training step.

Usage: .venv/bin/python benchmarks/train_ml1m.py [--baseline] [--workers N] [--hp epochs=10 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ml-1m-ncf"
RESULTS = REPO / "benchmarks" / "results"


def write_channels(base: Path) -> None:
    """The NCF files as ``train``, ``test`` and ``test_negatives`` channels under ``base``."""
    train = pd.read_csv(
        DATA / "ml-1m.train.pairs", sep="\t", header=None, names=["user_id", "item_id"], dtype=str
    )
    test = pd.read_csv(
        DATA / "ml-1m.test.rating",
        sep="\t",
        header=None,
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype={"user_id": str, "item_id": str},
    )
    for channel, frame in (("train", train), ("test", test[["user_id", "item_id"]])):
        directory = base / "input" / "data" / channel
        directory.mkdir(parents=True)
        frame.to_parquet(directory / "part-0.parquet", index=False)
    negatives = base / "input" / "data" / "test_negatives"
    negatives.mkdir(parents=True)
    shutil.copy(DATA / "ml-1m.test.negative", negatives / "ml-1m.test.negative")


def write_config(
    base: Path, hyperparameters: dict[str, str], host: str = "algo-1", hosts: int = 1
) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channels = {c: {"TrainingInputMode": "File"} for c in ("train", "test", "test_negatives")}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": host, "hosts": [f"algo-{n + 1}" for n in range(hosts)]})
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_train(bases: list[Path]) -> list[subprocess.CompletedProcess[str]]:
    """``train`` on every base directory at once (one host each); the first is the chief."""
    workers = [f"localhost:{free_port()}" for _ in bases]
    processes = []
    for index, base in enumerate(bases):
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
        if len(bases) > 1:
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env["TF_CONFIG"] = json.dumps(tf_config)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "training"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [process.communicate() for process in processes]
    return [
        subprocess.CompletedProcess(process.args, process.returncode, out, err)
        for process, (out, err) in zip(processes, outputs, strict=True)
    ]


def run_ours(hyperparameters: dict[str, str], workers: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ncf-ml1m-") as scratch:
        bases = [Path(scratch) / f"algo-{n + 1}" for n in range(workers)]
        for index, base in enumerate(bases):
            write_channels(base)
            write_config(base, hyperparameters, f"algo-{index + 1}", workers)
        base = bases[0]
        train_started = time.perf_counter()
        processes = run_train(bases)
        train_seconds = time.perf_counter() - train_started
        process = processes[0]
        for line in process.stdout.splitlines():
            if line.startswith(("epoch=", "final", "resuming")) or "early stopping" in line:
                print(line, flush=True)
        for host in processes:
            if host.returncode != 0:
                print(host.stdout[-4000:], host.stderr[-4000:], sep="\n")
                raise SystemExit(f"train failed with exit status {host.returncode}")
        report = json.loads((base / "output" / "data" / "metrics.json").read_text())
        RESULTS.mkdir(parents=True, exist_ok=True)
        target = RESULTS / "ml1m-model"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(base / "model", target)
        shutil.copy(base / "output" / "data" / "metrics.json", RESULTS / "ml1m-metrics.json")
        shutil.copy(
            base / "output" / "data" / "learning_curve.png", RESULTS / "ml1m-learning-curve.png"
        )
    config, data, timings = report["config"], report["data"], report["timings"]
    # A family fitted without NCF epochs (ease, ials, blend: the search may choose one) has
    # no training seconds, so no samples/s.
    training_seconds = timings.get("training_seconds", math.nan)
    epochs_run = len(report["history"])
    samples = data["train_interactions"] * (1 + config["num_negatives"]) * epochs_run
    steps = epochs_run * math.ceil(
        data["train_interactions"]
        * (1 + config["num_negatives"])
        / (config["batch_size"] * workers)
    )
    return {
        "workers": workers,
        "samples_per_second_per_worker": samples / training_seconds / workers,
        "seconds_per_step": training_seconds / steps,
        "hr@10": report["test"]["hr"],
        "ndcg@10": report["test"]["ndcg"],
        "full_hr@10": report["test"].get("full_hr", float("nan")),
        "full_ndcg@10": report["test"].get("full_ndcg", float("nan")),
        "validation": report["validation"],
        "timings": timings,
        "best_epoch": report["best_epoch"],
        "epochs_run": epochs_run,
        "train_subprocess_seconds": train_seconds,
        "training_seconds": training_seconds,
        "samples_per_second": samples / training_seconds,
        "config": config,
    }


def run_baseline(num_samples: int, config: dict[str, Any]) -> dict[str, float]:
    """The paper's way: a Python loop draws negatives per positive, Keras fits at batch 256.

    The model has the towers and sizes of ``config`` (the run being compared), built
    from stock Keras layers as the paper's code builds them.
    """
    import keras
    from keras import layers

    pairs = pd.read_csv(DATA / "ml-1m.train.pairs", sep="\t", header=None).to_numpy()
    num_users, num_items = int(pairs[:, 0].max()) + 1, 3706
    num_negatives = int(config["num_negatives"])
    train = {(int(u), int(i)) for u, i in pairs}
    rng = np.random.default_rng(0)
    positives = pairs[rng.permutation(len(pairs))[: num_samples // (1 + num_negatives)]]

    user_in = keras.Input((1,), dtype="int32")
    item_in = keras.Input((1,), dtype="int32")
    towers = []
    if config["model_type"] in ("gmf", "neumf"):
        gmf_dim = int(config["gmf_dim"])
        mf_u = layers.Flatten()(layers.Embedding(num_users, gmf_dim)(user_in))
        mf_i = layers.Flatten()(layers.Embedding(num_items, gmf_dim)(item_in))
        towers.append(layers.Multiply()([mf_u, mf_i]))
    if config["model_type"] in ("mlp", "neumf"):
        first, *rest = config["mlp_layers"]
        mlp_u = layers.Flatten()(layers.Embedding(num_users, first // 2)(user_in))
        mlp_i = layers.Flatten()(layers.Embedding(num_items, first // 2)(item_in))
        hidden = layers.Concatenate()([mlp_u, mlp_i])
        for units in rest:
            hidden = layers.Dense(units, activation="relu")(hidden)
        towers.append(hidden)
    merged = towers[0] if len(towers) == 1 else layers.Concatenate()(towers)
    output = layers.Dense(1, activation="sigmoid")(merged)
    model = keras.Model([user_in, item_in], output)
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="binary_crossentropy")

    started = time.perf_counter()
    user_input, item_input, labels = [], [], []
    for u, i in positives:  # the paper's get_train_instances
        user_input.append(u)
        item_input.append(i)
        labels.append(1)
        for _ in range(num_negatives):
            j = np.random.randint(num_items)
            while (int(u), j) in train:
                j = np.random.randint(num_items)
            user_input.append(u)
            item_input.append(j)
            labels.append(0)
    sampled = time.perf_counter()
    model.fit(
        [np.array(user_input), np.array(item_input)],
        np.array(labels),
        batch_size=256,
        epochs=1,
        verbose=0,
        shuffle=True,
    )
    fitted = time.perf_counter()
    return {
        "samples": len(labels),
        "sampling_seconds": sampled - started,
        "fit_seconds": fitted - sampled,
        "samples_per_second": len(labels) / (fitted - started),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hp", action="append", default=[], help="hyperparameter name=value")
    parser.add_argument("--baseline", action="store_true", help="also run the paper-style baseline")
    parser.add_argument("--baseline-samples", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=1, help="train processes (hosts)")
    args = parser.parse_args()
    hyperparameters = dict(item.split("=", 1) for item in args.hp)
    ours = run_ours(hyperparameters, args.workers)
    wall = time.perf_counter() - STARTED
    print(
        f"ours: HR@10={ours['hr@10']:.4f} NDCG@10={ours['ndcg@10']:.4f} "
        f"(full ranking HR@10={ours['full_hr@10']:.4f} NDCG@10={ours['full_ndcg@10']:.4f}) "
        f"best epoch {ours['best_epoch']} of {ours['epochs_run']}; "
        f"wall time from process start {wall:.1f} s; "
        f"training {ours['samples_per_second']:,.0f} samples/s",
        flush=True,
    )
    print(
        f"workers {ours['workers']}: {ours['samples_per_second_per_worker']:,.0f} samples/s "
        f"per worker, {ours['seconds_per_step'] * 1000:.1f} ms per step "
        f"(training {ours['training_seconds']:.1f} s)",
        flush=True,
    )
    if args.baseline:
        baseline = run_baseline(args.baseline_samples, ours["config"])
        print(
            f"baseline (paper-style Keras {ours['config']['model_type']}, batch 256): "
            f"{baseline['samples']:,} samples, "
            f"sampling {baseline['sampling_seconds']:.1f} s + fit {baseline['fit_seconds']:.1f} s "
            f"= {baseline['samples_per_second']:,.0f} samples/s; "
            f"ours / baseline = {ours['samples_per_second'] / baseline['samples_per_second']:.1f}x"
        )


if __name__ == "__main__":
    main()
