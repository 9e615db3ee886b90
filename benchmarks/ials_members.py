"""The blend with 1..K averaged iALS fits (``ials_members``) on MovieLens-1M's NCF split.

Outside the training job, to see the effect of averaging alone: EASE
(``training.families.ease.ease_weights``) and ``implicit``'s ALS with the product's
default settings (64 factors, L2 0.1, confidence 1 + 4, ``--iterations`` iterations)
are fitted on the training pairs less one random validation pair per user, scored
on that pair against 99 negatives drawn among the user's unseen items, then refitted
on all training pairs and scored on the NCF test pair with its exact 99 negatives.
Each user's two rows are standardised over the catalog and mixed half and half, as
``blend`` does; the iALS row is the mean of the first ``n`` fits (seeds ``base + k``).
Prints validation and test HR@10 per number of fits and base seed.

Usage: .venv/bin/python benchmarks/ials_members.py [--members 1,2,3,4,6] [--seeds 0,100,200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from ncf_contract.ranking import standardise_rows
from training.evaluation import ranking_metrics_from_scores
from training.families.ease import ease_weights

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-1m-ncf"
USERS, ITEMS = 6_040, 3_706


def hit_rate(scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float:
    """HR@10 of each user's positive among its negatives, as the training job computes it."""
    hit, _ = ranking_metrics_from_scores(
        scores[np.arange(len(positives)), positives],
        np.take_along_axis(scores, negatives, axis=1),
        k=10,
    )
    return float(hit.mean())


def als_rows(matrix: sp.csr_matrix, seed: int, iterations: int) -> np.ndarray:
    """``[users, items]`` scores of one ALS fit with the product's defaults."""
    confidence = matrix.copy()
    confidence.data = 1.0 + 4.0 * confidence.data
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=64, regularization=0.1, alpha=1.0, iterations=iterations, random_state=seed
        )
        model.fit(confidence, show_progress=False)
    return np.asarray(model.user_factors @ model.item_factors.T, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="1,2,3,4,6")
    parser.add_argument("--seeds", default="0,100,200")
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    members = [int(value) for value in args.members.split(",")]
    pairs = np.loadtxt(DATA / "ml-1m.train.pairs", dtype=np.int64)
    test_items = np.loadtxt(DATA / "ml-1m.test.rating", dtype=np.int64)[:, 1]
    with open(DATA / "ml-1m.test.negative") as lines:
        test_negatives = np.array([[int(x) for x in line.split("\t")[1:]] for line in lines])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pairs))
    _, first = np.unique(pairs[order, 0], return_index=True)
    held_out = order[first]
    kept = np.ones(len(pairs), dtype=bool)
    kept[held_out] = False
    validation_items = np.empty(USERS, dtype=np.int64)
    validation_items[pairs[held_out, 0]] = pairs[held_out, 1]

    def matrix(rows: np.ndarray) -> sp.csr_matrix:
        ones = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((ones, (rows[:, 0], rows[:, 1])), shape=(USERS, ITEMS))

    fits = {"val": matrix(pairs[kept]), "test": matrix(pairs)}
    seen = fits["test"].toarray() > 0
    validation_negatives = np.stack(
        [rng.choice(np.flatnonzero(~seen[user]), 99, replace=False) for user in range(USERS)]
    )
    targets = {
        "val": (validation_items, validation_negatives),
        "test": (test_items, test_negatives),
    }
    ease_rows = {}
    for split, interactions in fits.items():
        item_item, _ = ease_weights(sp.csr_array(interactions), 500.0)
        ease_rows[split] = standardise_rows(interactions @ item_item)
    for seed in (int(value) for value in args.seeds.split(",")):
        rows = {
            split: [als_rows(interactions, seed + k, args.iterations) for k in range(max(members))]
            for split, interactions in fits.items()
        }
        for count in members:
            figures = {
                split: hit_rate(
                    0.5 * ease_rows[split]
                    + 0.5 * standardise_rows(np.mean(rows[split][:count], axis=0)),
                    *targets[split],
                )
                for split in fits
            }
            print(
                f"seed {seed:4d}  fits {count}  val HR@10 {figures['val']:.4f}  "
                f"test HR@10 {figures['test']:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
