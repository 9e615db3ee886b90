r"""GMF's output weights and the softmax's settings, swept on a GPU (JAX) and chosen on validation.

The CPU here fits a softmax GMF on ML-1M in about 10 minutes, too slow to compare
more than a handful of settings; the lent GPU machine has JAX but no TensorFlow. So
this script re-implements the GMF scorer (``gmf_user · (h ⊙ gmf_item)``), its two
losses and Adam in JAX, and fits them on the *product's own* splits, dumped once
here with the product's data loading and objectives: the same train / validation
split, validation negatives and test negatives that ``benchmarks/quality.py`` uses.
Each setting is chosen on validation HR@10 (early stopping, patience 3), refitted
on train + validation for its best epoch count and tested once. What it chose is
then run in the product (``benchmarks/quality.py``); BENCHMARKS.md reports both.

Variants (``variant``):

- ``h``: the paper's GMF, the output weights ``h`` learned (lecun-uniform start);
- ``h1``: ``h`` learned from ones;
- ``dot``: ``h`` fixed at one, i.e. matrix factorisation (what the product's GMF does
  under the softmax, ``training/families/ncf_model.py``);
- ``bias``: ``dot`` plus a learned item bias;
- ``pw_h`` / ``pw_dot``: the pointwise loss (binary cross-entropy on each positive
  and ``negs`` uniform negatives) with ``h`` learned or fixed at one.

Usage::

    # here (the project's venv): the splits, to benchmarks/results/sweep/{ncf,half}.npz
    .venv/bin/python benchmarks/softmax_sweep.py dump
    # on the GPU machine (JAX), carrying benchmarks/results/sweep:
    python benchmarks/softmax_sweep.py sweep ncf,half \
        '{"d": [128], "lr": [0.002], "l2": [0.002], "bs": [1024], "variant": ["h", "dot"]}'
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPLITS = REPO / "benchmarks" / "results" / "sweep"
TOP_K = 10
MAX_EPOCHS = 30
PATIENCE = 3


def dump() -> None:
    """Write each dataset's splits and ranking tasks as the product builds them."""
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    from quality import write_half_channels
    from train_ml1m import write_channels

    from training.config import TrainingConfig
    from training.environment import Environment
    from training.main import load_data
    from training.objectives import TEST_SEED_OFFSET, ImplicitObjective, objective_for

    SPLITS.mkdir(parents=True, exist_ok=True)
    for name, write in (("ncf", write_channels), ("half", write_half_channels)):
        base = Path(tempfile.mkdtemp())
        write(base)
        (base / "input" / "config").mkdir(parents=True, exist_ok=True)
        (base / "input" / "config" / "hyperparameters.json").write_text("{}")
        config = TrainingConfig.from_hyperparameters({})
        dataset, test_negatives = load_data(Environment.from_base_dir(base), config)
        full = dataset.with_validation_in_train()
        objective, full_objective = objective_for(config, dataset), objective_for(config, full)
        assert isinstance(objective, ImplicitObjective)
        assert isinstance(full_objective, ImplicitObjective)
        validation = objective.validation_task
        if test_negatives is not None:
            test_users, test_items, test_rows = test_negatives
        else:
            assert full.test is not None
            task = full_objective._task(full.test, TEST_SEED_OFFSET)
            test_users, test_items, test_rows = task.users, task.held_out, task.negatives
        np.savez_compressed(
            SPLITS / f"{name}.npz",
            num_users=dataset.num_users,
            num_items=dataset.num_items,
            train_users=dataset.train.user_index,
            train_items=dataset.train.item_index,
            full_users=full.train.user_index,
            full_items=full.train.item_index,
            validation_users=validation.users,
            validation_items=validation.held_out,
            validation_negatives=validation.negatives,
            test_users=np.asarray(test_users),
            test_items=np.asarray(test_items),
            test_negatives=np.asarray(test_rows),
        )
        print(name, dataset.num_users, dataset.num_items, len(dataset.train), len(full.train))


def sweep(names: list[str], grid: dict[str, list[Any]], top: int, seeds: int) -> None:
    """Fit every setting of ``grid`` on each dataset; refit and test the ``top`` best."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")

    def uses_h(variant: str) -> bool:
        return variant in ("h", "h1", "pw_h")

    def ranking(params: Any, variant: str, users: Any, held_out: Any, negatives: Any) -> Any:
        user_rows, item_rows, item_bias, h = params
        weights = h if uses_h(variant) else jnp.ones_like(h)
        bias = item_bias if variant == "bias" else jnp.zeros_like(item_bias)
        items = jnp.concatenate([held_out[:, None], negatives], axis=1)
        scores = jnp.einsum("bd,bkd->bk", user_rows[users] * weights, item_rows[items])
        scores = scores + bias[items]
        rank = jnp.sum(scores[:, 1:] > scores[:, :1], axis=1)  # ties in the target's favour
        hit = rank < TOP_K
        return jnp.mean(hit), jnp.mean(jnp.where(hit, 1.0 / jnp.log2(rank + 2.0), 0.0))

    def epoch_function(setting: dict[str, Any], num_items: int) -> Any:
        variant, l2 = setting["variant"], setting["l2"]
        candidates = setting.get("cands", 0)
        pointwise = variant.startswith("pw")

        def loss(params: Any, users: Any, items: Any, weight: Any, label: Any, key: Any) -> Any:
            user_rows, item_rows, item_bias, h = params
            user = user_rows[users] * (h if uses_h(variant) else jnp.ones_like(h))
            bias = item_bias if variant == "bias" else jnp.zeros_like(item_bias)
            if pointwise:  # item_bias[0] stands in for the output layer's scalar bias
                logit = jnp.sum(user * item_rows[items], 1) + item_bias[0]
                per_example = (
                    jnp.maximum(logit, 0) - logit * label + jnp.log1p(jnp.exp(-jnp.abs(logit)))
                )
            elif candidates:  # a uniform sample shared by the batch
                drawn = jax.random.randint(key, (candidates,), 0, num_items)
                positive = jnp.sum(user * item_rows[items], 1, keepdims=True) + bias[items][:, None]
                others = user @ item_rows[drawn].T + bias[drawn]
                others = jnp.where(items[:, None] == drawn[None, :], -1e9, others)
                logits = jnp.concatenate([positive, others], 1)
                per_example = -jax.nn.log_softmax(logits)[:, 0]
            else:  # the whole catalog
                logits = user @ item_rows.T + bias
                per_example = -jax.nn.log_softmax(logits)[jnp.arange(users.shape[0]), items]
            penalty = jnp.sum(user_rows[users] ** 2, 1) + jnp.sum(item_rows[items] ** 2, 1)
            total = jnp.sum(weight * (per_example + l2 * penalty))
            return total / jnp.maximum(jnp.sum(weight), 1.0)

        gradient = jax.grad(loss)
        beta1, beta2, epsilon = 0.9, 0.999, 1e-7  # Keras' Adam

        def step(carry: Any, batch: Any) -> Any:
            params, first, second, count, rate, key = carry
            users, items, weight, label = batch
            key, sub = jax.random.split(key)
            grads = gradient(params, users, items, weight, label, sub)
            count = count + 1
            first = jax.tree.map(lambda m, g: beta1 * m + (1 - beta1) * g, first, grads)
            second = jax.tree.map(lambda v, g: beta2 * v + (1 - beta2) * g * g, second, grads)
            scale = rate * jnp.sqrt(1 - beta2**count) / (1 - beta1**count)
            params = jax.tree.map(
                lambda p, m, v: p - scale * m / (jnp.sqrt(v) + epsilon), params, first, second
            )
            return (params, first, second, count, rate, key), None

        @jax.jit
        def epoch(state: Any, batches: Any, rate: Any, key: Any) -> Any:
            (params, first, second, count, _, _), _ = jax.lax.scan(
                step, (*state, rate, key), batches
            )
            return params, first, second, count

        return epoch

    def batches(
        rng: np.random.Generator, users: Any, items: Any, setting: dict[str, Any], num_items: int
    ) -> Any:
        labels = np.ones(len(users), np.float32)
        if setting["variant"].startswith("pw"):
            negatives = setting.get("negs", 4)
            negative_users = np.repeat(users, negatives)
            users = np.concatenate([users, negative_users])
            items = np.concatenate([items, rng.integers(0, num_items, len(negative_users))])
            labels = np.concatenate([labels, np.zeros(len(negative_users), np.float32)])
        size, count = setting["bs"], len(users)
        steps = -(-count // size)
        order = np.concatenate([rng.permutation(count), np.zeros(steps * size - count, np.int64)])
        weight = np.concatenate([np.ones(count), np.zeros(steps * size - count)]).astype(np.float32)
        return tuple(
            jnp.asarray(column.reshape(steps, size))
            for column in (users[order], items[order], weight, labels[order])
        )

    def fit(
        data: dict[str, Any],
        setting: dict[str, Any],
        users: Any,
        items: Any,
        epochs: int,
        task: Any = None,
        seed: int = 0,
    ) -> tuple[Any, list[tuple[float, float]]]:
        num_users, num_items, dim = int(data["num_users"]), int(data["num_items"]), setting["d"]
        keys = jax.random.split(jax.random.PRNGKey(seed), 3)
        limit = np.sqrt(3.0 / dim)
        h = (
            jnp.ones(dim)
            if setting["variant"] == "h1"
            else jax.random.uniform(keys[2], (dim,), minval=-limit, maxval=limit)
        )
        params = (
            jax.random.normal(keys[0], (num_users, dim)) * 0.01,
            jax.random.normal(keys[1], (num_items, dim)) * 0.01,
            jnp.zeros(num_items),
            h,
        )
        zeros = jax.tree.map(jnp.zeros_like, params)
        state = (params, zeros, zeros, jnp.zeros((), jnp.float32))
        epoch_fn = epoch_function(setting, num_items)
        rng = np.random.default_rng(seed)
        history: list[tuple[float, float]] = []
        for epoch in range(epochs):
            rate = setting["lr"] * setting.get("decay", 1.0) ** epoch
            state = epoch_fn(
                state,
                batches(rng, users, items, setting, num_items),
                jnp.float32(rate),
                jax.random.PRNGKey(1000 * seed + epoch),
            )
            if task is not None:
                hit_rate, ndcg = ranking(state[0], setting["variant"], *task)
                history.append((float(hit_rate), float(ndcg)))
                best = int(np.argmax([h for h, _ in history]))
                if epoch - best >= PATIENCE:
                    break
        return state[0], history

    keys = sorted(grid)
    for name in names:
        data = dict(np.load(SPLITS / f"{name}.npz"))
        validation = tuple(
            jnp.asarray(data[f"validation_{k}"]) for k in ("users", "items", "negatives")
        )
        test = tuple(jnp.asarray(data[f"test_{k}"]) for k in ("users", "items", "negatives"))
        results = []
        for values in itertools.product(*(grid[key] for key in keys)):
            setting = dict(zip(keys, values, strict=True))
            started = time.time()
            _, history = fit(
                data, setting, data["train_users"], data["train_items"], MAX_EPOCHS, validation
            )
            best = int(np.argmax([h for h, _ in history]))
            results.append((history[best][0], best + 1, setting))
            print(
                f"{name} {json.dumps(setting)} val {history[best][0]:.4f} epoch {best + 1} "
                f"({len(history)} run, {time.time() - started:.1f} s)",
                flush=True,
            )
        results.sort(key=lambda result: -result[0])
        for value, epochs, setting in results[:top]:
            figures = []
            for seed in range(seeds):
                params, _ = fit(
                    data, setting, data["full_users"], data["full_items"], epochs, seed=seed
                )
                hit_rate, ndcg = ranking(params, setting["variant"], *test)
                figures.append(f"{float(hit_rate):.4f}/{float(ndcg):.4f}")
            chosen = f"TOP {name} {json.dumps(setting)} val {value:.4f} epoch {epochs}"
            print(f"{chosen} test {' '.join(figures)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dump", help="write the splits (here, with the project's venv)")
    run = commands.add_parser("sweep", help="fit a grid of settings (JAX, on the GPU machine)")
    run.add_argument("datasets", help="comma-separated: ncf, half")
    run.add_argument("grid", help="JSON: setting name -> list of values")
    run.add_argument("--top", type=int, default=3, help="best settings refitted and tested")
    run.add_argument("--seeds", type=int, default=1, help="refits (seeds) per tested setting")
    args = parser.parse_args()
    if args.command == "dump":
        dump()
    else:
        sweep(args.datasets.split(","), json.loads(args.grid), args.top, args.seeds)


if __name__ == "__main__":
    main()
