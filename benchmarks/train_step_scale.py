"""Training-step cost against catalog size: lazy (sparse) against Keras' dense Adam.

Fits the default GMF (d=64, batch 2048, 16 steps per execution, as ``train`` compiles it)
on ``--batches`` random batches of (user, item, label) for each catalog shape and optimizer,
all in one process one after the other, and prints samples/s of the fit after a warm-up
pass. It isolates what issue 16 is about, the optimizer's cost per step, from data
loading and evaluation (``benchmarks/train_scale.py`` runs whole jobs).

Usage: .venv/bin/python benchmarks/train_step_scale.py [--batches 400]
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from training.families.lazy_adam import LazyAdam
from training.families.ncf import STEPS_PER_EXECUTION
from training.families.ncf_model import NCF

SHAPES = {"ML-1M (6,040 x 3,706)": (6_040, 3_706), "ML-20M (138,493 x 26,744)": (138_493, 26_744)}
OPTIMIZERS = {
    "lazy Adam (sparse_updates=true)": LazyAdam,
    "Keras Adam (dense)": keras.optimizers.Adam,
}


def samples_per_second(num_users: int, num_items: int, optimizer: type, batches: int) -> float:
    keras.utils.set_random_seed(0)
    model = NCF(num_users, num_items, model_type="gmf", gmf_dim=64, gmf_regularization=0.005)
    model.build_all()
    model.compile(
        optimizer=optimizer(learning_rate=0.003),
        loss="binary_crossentropy",
        jit_compile=False,
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    rng = np.random.default_rng(0)
    size = batches * 2048
    users = rng.integers(0, num_users, size, dtype=np.int32)
    items = rng.integers(0, num_items, size, dtype=np.int32)
    labels = (rng.random((size, 1)) < 0.2).astype(np.float32)
    warm = 32 * 2048
    model.fit((users[:warm], items[:warm]), labels[:warm], batch_size=2048, verbose=0)
    started = time.perf_counter()
    model.fit((users, items), labels, batch_size=2048, verbose=0, shuffle=False)
    return size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    args = parser.parse_args()
    for shape, (num_users, num_items) in SHAPES.items():
        for name, optimizer in OPTIMIZERS.items():
            rate = samples_per_second(num_users, num_items, optimizer, args.batches)
            print(f"{shape:28s} {name:34s} {rate:12,.0f} samples/s", flush=True)


if __name__ == "__main__":
    main()
