"""The all-reduce's share of a training step: MovieLens-1M, worker processes on this machine.

Starts ``--workers`` processes (default 2) as the hosts of one
``MultiWorkerMirroredStrategy`` job (gRPC on localhost ports, ``TF_CONFIG`` per
process). Each takes its users' share of the ML-1M training pairs
(``../shared/data/ml-1m-ncf``) with the default model (GMF d=64, lazy Adam,
``batch_size`` 2048 per replica, 4 negatives per positive) and times, all
processes at once, one phase after the other (a barrier between):

1. **step**: the training step as a multi-worker job runs it
   (``training.distributed.DistributedSteps``: Keras' ``train_step`` inside
   ``strategy.run``, the gradients all-reduced), over ``--steps`` batches;
2. **compute**: the same ``train_step`` on the same batches in a plain
   ``tf.function`` loop, with no strategy and no collective;
3. **all-reduce**: the gradients' collective alone, on tensors of their shapes
   (per embedding table an ``IndexedSlices`` of 2048 rows x 64, which the
   strategy all-gathers, and the output layer's dense kernel and bias), 16 per
   call as in the step.

Prints each phase's ms per step on every worker (median of ``--repeats``), the
all-reduce's share of the step (3 / 1), and what is left, (1 - 2 - 3): the
strategy's own per-step cost. On this machine the processes share 2 cores,
so the collective runs over loopback: it measures the all-reduce's software
cost (packing, gRPC, the ring's rounds), not a network's bandwidth.

Usage (under the shared CPU lock):
    flock /work/notes/bench.lock .venv/bin/python benchmarks/allreduce_share.py [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ml-1m-ncf"
#: Batches per call into the compiled step (``training.distributed.STEPS_PER_CALL``).
PER_CALL = 16


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def median_ms_per_step(run: Callable[[], None], steps: int, repeats: int) -> float:
    """Median over ``repeats`` of ``run``'s wall time divided by ``steps``, in ms."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) / steps * 1000)
    return statistics.median(times)


def worker(index: int, hosts: list[str], steps: int, repeats: int) -> dict[str, Any]:
    """One host's three timings (see the module docstring)."""
    import numpy as np
    import pandas as pd

    from training.cluster import Cluster, user_shards
    from training.distributed import DistributedSteps, make_distribution

    cluster = Cluster.of(hosts, hosts[index])
    distribution = make_distribution(cluster, os.environ["TF_CONFIG"], collective_timeout=600)
    assert distribution is not None
    import tensorflow as tf

    from training.config import TrainingConfig
    from training.dataset import build_dataset
    from training.families.ncf import build_model, compile_model
    from training.objectives import Examples, objective_for
    from training.signals import StopFlag

    pairs = pd.read_csv(
        DATA / "ml-1m.train.pairs", sep="\t", header=None, names=["user_id", "item_id"], dtype=str
    )
    dataset = build_dataset(pairs, None, None)
    config = TrainingConfig.from_hyperparameters({"model_type": "gmf", "tuning": "off"})
    objective = objective_for(config, dataset)
    train = dataset.train
    shards = user_shards(train.user_index, dataset.num_users, cluster.num_workers, config.seed)
    rows = np.flatnonzero(shards[train.user_index] == index)
    drawn = objective.epoch_examples(np.random.default_rng([config.seed, index, 0, 1]), rows)
    batch = config.batch_size
    count = steps * batch
    assert len(drawn.users) >= count, f"{len(drawn.users)} examples < {count}"
    examples = Examples(drawn.users[:count], drawn.items[:count], drawn.targets[:count])

    # 1. The distributed step.
    with distribution.scope():
        model = build_model(config, objective)
        compile_model(model, config, objective)
    distributed = DistributedSteps(distribution, model)
    stop = StopFlag()

    def step() -> None:
        distributed.fit_epoch(examples, batch, count * cluster.num_workers, stop, "timing")

    step()  # traces and warms up
    distribution.barrier("before the step")
    step_ms = median_ms_per_step(step, steps, repeats)
    print(f"{hosts[index]}: step {step_ms:.1f} ms", file=sys.stderr, flush=True)

    # 2. The same train_step, no strategy, no collective.
    plain = build_model(config, objective)
    compile_model(plain, config, objective)
    batches = (
        tf.data.Dataset.from_tensor_slices(
            (
                (examples.users.astype(np.int32), examples.items.astype(np.int32)),
                examples.targets.astype(np.float32).reshape(-1, 1),
            )
        )
        .repeat()
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )

    @tf.function
    def local_steps(iterator: Any, calls: tf.Tensor) -> None:
        for _ in tf.range(calls):
            plain.train_step(next(iterator))

    iterator = iter(batches)

    def compute() -> None:
        for _ in range(steps // PER_CALL):
            local_steps(iterator, tf.constant(PER_CALL))
        float(plain.get_metrics_result()["loss"])

    compute()
    distribution.barrier("before the compute alone")
    compute_ms = median_ms_per_step(compute, steps, repeats)
    print(f"{hosts[index]}: compute {compute_ms:.1f} ms", file=sys.stderr, flush=True)

    # 3. The gradients' collective alone, on tensors of their shapes.
    dim = config.gmf_dim
    rng = np.random.default_rng(index)
    user_rows = tf.constant(rng.integers(0, dataset.num_users, batch), tf.int32)
    item_rows = tf.constant(rng.integers(0, dataset.num_items, batch), tf.int32)
    values = tf.constant(rng.standard_normal((batch, dim)), tf.float32)
    kernel, bias = tf.constant(np.ones((dim, 1)), tf.float32), tf.constant([0.5], tf.float32)
    strategy = distribution.strategy
    user_shape = tf.constant([dataset.num_users, dim], tf.int64)
    item_shape = tf.constant([dataset.num_items, dim], tf.int64)

    def reduce_once() -> Any:
        context = tf.distribute.get_replica_context()
        gradients = [
            tf.IndexedSlices(tf.identity(values), user_rows, user_shape),
            tf.IndexedSlices(tf.identity(values), item_rows, item_shape),
            tf.identity(kernel),
            tf.identity(bias),
        ]
        reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        return reduced[2]

    @tf.function
    def reduce_steps(calls: tf.Tensor) -> tf.Tensor:
        total = tf.zeros([dim, 1])
        for _ in tf.range(calls):
            kernel_sum = strategy.run(reduce_once)
            total += strategy.experimental_local_results(kernel_sum)[0]
        return total

    def all_reduce() -> None:
        for _ in range(steps // PER_CALL):
            reduce_steps(tf.constant(PER_CALL)).numpy()

    all_reduce()
    distribution.barrier("before the all-reduce alone")
    reduce_ms = median_ms_per_step(all_reduce, steps, repeats)
    distribution.barrier("the end")
    return {
        "host": hosts[index],
        "examples": count,
        "step_ms": step_ms,
        "compute_ms": compute_ms,
        "all_reduce_ms": reduce_ms,
        "all_reduce_share": reduce_ms / step_ms,
        "strategy_overhead_ms": step_ms - compute_ms - reduce_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=320, help="batches per timing (x16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    hosts = [f"algo-{n + 1}" for n in range(args.workers)]
    if args.worker_index is not None:
        result = worker(args.worker_index, hosts, args.steps, args.repeats)
        print("RESULT " + json.dumps(result), flush=True)
        return
    assert args.steps % PER_CALL == 0, f"--steps must be a multiple of {PER_CALL}"
    addresses = [f"localhost:{free_port()}" for _ in hosts]
    processes = []
    for index in range(args.workers):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, *sys.argv[1:], "--worker-index", str(index)],
                cwd=REPO,
                env={**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a worker failed ({process.returncode}):\n{err[-4000:]}")
        results.append(json.loads(out.split("RESULT ", 1)[1]))
    print("| host | step ms | compute ms | all-reduce ms | share | strategy overhead ms |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['host']} | {r['step_ms']:.1f} | {r['compute_ms']:.1f} | "
            f"{r['all_reduce_ms']:.1f} | {r['all_reduce_share']:.0%} | "
            f"{r['strategy_overhead_ms']:.1f} |"
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
