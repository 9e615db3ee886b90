"""The hybrid family on MovieLens-1M: warm (NCF protocol), cold items, similar items, filters.

Reads ``../shared/data/ml-1m-ncf`` (the NCF split) and ``../shared/data/ml-1m-meta``
(``movies.dat``, ``users.dat``: read through the hyperparameters a user would set:
``item_columns`` / ``user_columns``, ``attribute_delimiter=;``,
``attribute_encoding=latin-1``, ``item_attribute_kinds={"title": "text"}``). The
split's item indices and user indices become MovieLens ids (the split's own map).
Everything runs in this process through the training API (``build_dataset``,
``attach_attributes``, ``trainer.train``, ``export``) and the serving
``Recommender``; nothing is written into the repository but
``benchmarks/results/`` (git ignores it).

Parts (``--part``, default all):

- ``warm``: the hybrid with the ``items`` and ``users`` channels and the same
  model without them, HR@10 / NDCG@10 on the paper's 99 test negatives.
- ``cold``: 10% of the items with interactions (seed 0) are removed from
  ``train`` entirely (their attributes kept); each user whose test item is one of
  them ranks it against 99 cold items drawn among those the user never
  interacted with. HR@10 / NDCG@10 of the hybrid and of popularity (all cold
  items have training popularity 0, so popularity's ties are broken at random).
- ``similar``: top-5 by content, behaviour and hybrid of sample movies (the warm
  model with attributes).
- ``latency``: top-10 in process, one request at a time, with and without a
  filter, p50 / p99 over ``--requests`` requests.

Usage: .venv/bin/python benchmarks/hybrid_ml1m.py [--part warm|cold|similar|latency]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
MODEL_DIR = RESULTS / "hybrid-ml1m-model"

ATTRIBUTE_HYPERPARAMETERS: dict[str, Any] = {
    "item_columns": ["item_id", "title", "genres"],
    "user_columns": ["user_id", "gender", "age", "occupation", "zip"],
    "attribute_delimiter": ";",
    "attribute_encoding": "latin-1",
    "item_attribute_kinds": {"title": "text"},
}
SAMPLE_MOVIES = ["1", "260", "858", "1214", "2858"]


def ncf_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train pairs, test rows and test negatives of the NCF split, as MovieLens ids."""
    split = DATA / "ml-1m-ncf"
    index_map = pd.read_csv(
        split / "ml-1m.item_index_map.tsv", sep="\t", header=None, names=["index", "movie"]
    )
    movie_of = dict(
        zip(index_map["index"].astype(str), index_map["movie"].astype(str), strict=True)
    )
    train = pd.read_csv(
        split / "ml-1m.train.pairs", sep="\t", header=None, names=["user", "item"], dtype=str
    )
    test = pd.read_csv(
        split / "ml-1m.test.rating",
        sep="\t",
        header=None,
        usecols=[0, 1],
        names=["user", "item"],
        dtype=str,
    )

    def as_ids(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": (frame["user"].astype(int) + 1).astype(str),
                "item_id": frame["item"].map(movie_of),
            }
        )

    lines = (split / "ml-1m.test.negative").read_text().splitlines()
    negatives = pd.DataFrame(
        {
            "user_id": [str(int(line.split("\t")[0][1:].split(",")[0]) + 1) for line in lines],
            "item_id": [movie_of[line.split("\t")[0][:-1].split(",")[1]] for line in lines],
            "negative_item_ids": [[movie_of[i] for i in line.split("\t")[1:]] for line in lines],
        }
    )
    return as_ids(train), as_ids(test), negatives


def read_attribute_channels(config: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    from training.attributes import read_attribute_channel

    meta = DATA / "ml-1m-meta"
    items = read_attribute_channel(meta / "movies.dat", config, "item")
    users = read_attribute_channel(meta / "users.dat", config, "user")
    assert items is not None and users is not None
    return items, users


def fit(
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    negatives: pd.DataFrame | None,
    with_attributes: bool,
    hyperparameters: dict[str, Any],
) -> tuple[Any, Any, Any, float]:
    """``(config, dataset, training result, seconds)`` of one in-process hybrid fit."""
    from training import evaluation, trainer
    from training.attributes import attach_attributes
    from training.config import TrainingConfig
    from training.dataset import build_dataset

    settings = {"model_type": "hybrid", **hyperparameters}
    if with_attributes:
        settings.update(ATTRIBUTE_HYPERPARAMETERS)
    config = TrainingConfig.from_hyperparameters(settings)
    started = time.perf_counter()
    items = users = None
    if with_attributes:
        items, users = read_attribute_channels(config)
    dataset = build_dataset(
        train,
        None,
        test,
        seed=config.seed,
        test_negatives=negatives,
        cold_item_ids=None if items is None else items["item_id"],
    )
    dataset = attach_attributes(dataset, items, users, config)
    resolved = None if negatives is None else evaluation.resolve_test_negatives(negatives, dataset)
    with tempfile.TemporaryDirectory() as checkpoints:
        result = trainer.train(
            config, dataset, Path(checkpoints), test_negatives=resolved, emit=print
        )
    return config, dataset, result, time.perf_counter() - started


def warm(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    from ncf_contract.model_dir import save_model_dir
    from training import export

    train, test, negatives = ncf_frames()
    figures = {}
    for with_attributes in (True, False):
        config, dataset, result, seconds = fit(
            train, test, negatives, with_attributes, hyperparameters
        )
        name = "hybrid, items + users channels" if with_attributes else "hybrid, no attributes"
        figures[name] = {**result.test, "best_epoch": result.fit.best_epoch, "seconds": seconds}
        print(json.dumps({name: figures[name]}), flush=True)
        if with_attributes:
            artifacts = export.build_artifacts(result.model, config, dataset, {"test": result.test})
            save_model_dir(MODEL_DIR, artifacts)
    return figures


def cold(hyperparameters: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    from training import evaluation

    train, test, _ = ncf_frames()
    rng = np.random.default_rng(seed)
    items = np.sort(train["item_id"].unique())
    held = set(rng.choice(items, size=len(items) // 10, replace=False).tolist())
    warm_train = train[~train["item_id"].isin(held)]
    _, dataset, result, seconds = fit(warm_train, None, None, True, hyperparameters)
    cold_test = test[test["item_id"].isin(held)]
    held_index = dataset.items.index_of(sorted(held))
    users = dataset.users.index_of(cold_test["user_id"].to_numpy(dtype=object))
    targets = dataset.items.index_of(cold_test["item_id"].to_numpy(dtype=object))
    everything = pd.concat([train, test])
    touched = everything.groupby("user_id")["item_id"].agg(set).to_dict()
    negatives = np.empty((len(users), 99), dtype=np.int64)
    for row, user_id in enumerate(cold_test["user_id"]):
        allowed = held_index[~np.isin(dataset.items.ids[held_index], list(touched[user_id]))]
        negatives[row] = rng.choice(allowed, size=99, replace=False)
    model = evaluation.sampled_ranking_metrics(
        result.model.scorer.score_pairs, users, targets, negatives, 10
    )
    jitter = rng.random(dataset.num_items) * 1e-3

    def popularity(users_: np.ndarray, items_: np.ndarray) -> np.ndarray:
        return dataset.item_popularity[items_] + jitter[items_]

    popular = evaluation.sampled_ranking_metrics(popularity, users, targets, negatives, 10)
    figures = {
        "held_out_items": len(held),
        "test_users": len(users),
        "hybrid": model,
        "popularity": popular,
        "seconds": seconds,
    }
    print(json.dumps({"cold": figures}), flush=True)
    return figures


def similar() -> str:
    from inference.instances import SimilarRequest
    from inference.recommender import Recommender

    recommender = Recommender.from_model_dir(MODEL_DIR)
    titles = pd.read_csv(
        DATA / "ml-1m-meta" / "movies.dat",
        sep=";",
        header=None,
        encoding="latin-1",
        dtype=str,
        names=["item_id", "title", "genres"],
    ).set_index("item_id")["title"]
    rows = ["| movie | by | top 5 |", "|---|---|---|"]
    for movie in SAMPLE_MOVIES:
        for by in ("content", "behaviour", "hybrid"):
            (answer,) = recommender.similar([SimilarRequest(movie, 5, by)], ["instance"])
            names = "; ".join(titles[item["item_id"]] for item in answer["items"])
            rows.append(f"| {titles[movie]} | {by} | {names} |")
    table = "\n".join(rows)
    print(table, flush=True)
    return table


def latency(requests: int) -> dict[str, Any]:
    from inference.instances import parse_instance
    from inference.recommender import Recommender

    recommender = Recommender.from_model_dir(MODEL_DIR)
    rng = np.random.default_rng(0)
    users = rng.choice(recommender.user_ids, size=requests)
    forms: dict[str, dict[str, Any]] = {
        "unfiltered": {},
        "include genres Comedy": {"filter": {"include": {"genres": ["Comedy"]}}},
        "include Comedy, exclude Horror|Drama": {
            "filter": {
                "include": {"genres": ["Comedy"]},
                "exclude": {"genres": ["Horror", "Drama"]},
            }
        },
        "unknown user, user_attributes": {"user_attributes": {"gender": "F", "age": "25"}},
    }
    figures = {}
    for name, extra in forms.items():
        times = []
        for user in users:
            user_id = "new-user" if "user_attributes" in extra else str(user)
            request = parse_instance({"user_id": user_id, "k": 10, **extra}, "instance")
            started = time.perf_counter()
            recommender.recommend([request])  # type: ignore[list-item]
            times.append(time.perf_counter() - started)
        micros = np.array(times) * 1e6
        figures[name] = {
            "p50_us": float(np.percentile(micros, 50)),
            "p99_us": float(np.percentile(micros, 99)),
        }
        print(json.dumps({name: figures[name]}), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["warm", "cold", "similar", "latency"], action="append")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--hp", action="append", default=[], help="name=value (JSON value)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    hyperparameters: dict[str, Any] = {}
    for pair in args.hp:
        name, _, value = pair.partition("=")
        try:
            hyperparameters[name] = json.loads(value)
        except ValueError:
            hyperparameters[name] = value
    parts = args.part or ["warm", "cold", "similar", "latency"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if "warm" in parts:
        results["warm"] = warm(hyperparameters)
    if "cold" in parts:
        results["cold"] = cold(hyperparameters)
    if "similar" in parts:
        results["similar"] = similar()
    if "latency" in parts:
        results["latency"] = latency(args.requests)
    (RESULTS / "hybrid_ml1m.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
