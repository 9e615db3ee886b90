"""What serving's ``diversity`` does to accuracy and diversity on MovieLens-1M test users.

For each ``diversity`` value, the served top-10 of every test user of the NCF
split (``../shared/data/ml-1m-ncf``) comes from the real
``inference.recommender.Recommender`` of a model directory, with each user's
*training* items excluded (the model directory's own seen matrix also holds the
test items, which would hide the held-out item). Reported per value:

- HR@10 / NDCG@10 of the held-out item in that list (full ranking: the list is
  drawn from every unseen item, not from 100 sampled candidates);
- the beyond-accuracy figures of ``training.beyond_accuracy`` on the lists
  (ILD on the model's unit item vectors, and on the MovieLens genres when
  ``../shared/data/ml-1m-meta/movies.dat`` is there).

Usage: .venv/bin/python benchmarks/diversity_sweep.py [--model-dir DIR]
    [--diversity 0 0.25 0.5] [--popularity-penalty 0]
(default model: ``benchmarks/results/ml1m-model``, written by ``benchmarks/train_ml1m.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from inference.instances import RecommendRequest  # noqa: E402
from inference.recommender import Recommender  # noqa: E402
from ncf_contract.model_dir import load_model_dir  # noqa: E402
from ncf_contract.seen import SeenItems  # noqa: E402
from training import beyond_accuracy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
K = 10


def genre_attributes(item_ids: list[str]) -> np.ndarray | None:
    """``[num_items, genres]`` one-hot MovieLens genres of the model's items, if the file is there.

    The NCF split numbers items 0..3705; ``ml-1m.item_index_map.tsv`` maps them to movie ids.
    """
    movies_file = DATA / "ml-1m-meta" / "movies.dat"
    index_map = DATA / "ml-1m-ncf" / "ml-1m.item_index_map.tsv"
    if not (movies_file.is_file() and index_map.is_file()):
        return None
    # movies.dat here is "movie_id;title;genres" (titles may hold ";": split on the last).
    lines = movies_file.read_text(encoding="latin-1").splitlines()
    movie_ids = [int(line.split(";", 1)[0]) for line in lines]
    genres = pd.Series([line.rsplit(";", 1)[1] for line in lines], index=movie_ids)
    one_hot = genres.str.get_dummies(sep="|")
    mapping = pd.read_csv(index_map, sep="\t", header=None, index_col=0).iloc[:, 0]
    movie_of_item = mapping.reindex([int(item) for item in item_ids]).to_numpy()
    return one_hot.reindex(movie_of_item).fillna(0).to_numpy(dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "benchmarks/results/ml1m-model")
    parser.add_argument("--diversity", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    parser.add_argument("--popularity-penalty", type=float, default=0.0)
    args = parser.parse_args()

    artifacts = load_model_dir(args.model_dir)
    user_index = {user: n for n, user in enumerate(artifacts.user_ids.tolist())}
    item_index = {item: n for n, item in enumerate(artifacts.item_ids.tolist())}
    train = pd.read_csv(DATA / "ml-1m-ncf" / "ml-1m.train.pairs", sep="\t", header=None, dtype=str)
    test = pd.read_csv(DATA / "ml-1m-ncf" / "ml-1m.test.rating", sep="\t", header=None, dtype=str)
    train_seen = SeenItems.from_pairs(
        train[0].map(user_index).to_numpy(),
        train[1].map(item_index).to_numpy(),
        artifacts.num_users,
        artifacts.num_items,
    )
    recommender = Recommender(dataclasses.replace(artifacts, seen=train_seen))
    users = test[0].tolist()
    held_out = test[1].map(item_index).to_numpy()
    popularity = artifacts.item_popularity
    attributes = genre_attributes(artifacts.item_ids.tolist())
    print(
        f"model {args.model_dir}: {artifacts.metadata.model_type}, "
        f"{artifacts.num_users} users x {artifacts.num_items} items; {len(users)} test users; "
        f"k={K}; popularity_penalty {args.popularity_penalty}"
    )
    header = ["diversity", "HR@10", "NDCG@10", *beyond_accuracy.METRIC_NAMES, "seconds"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for diversity in args.diversity:
        requests = [
            RecommendRequest(
                user_id=user,
                k=K,
                diversity=diversity,
                popularity_penalty=args.popularity_penalty,
            )
            for user in users
        ]
        started = time.perf_counter()
        predictions = recommender.recommend(requests)
        seconds = time.perf_counter() - started
        lists = np.full((len(users), K), -1, dtype=np.int64)
        for row, prediction in enumerate(predictions):
            chosen = [item_index[entry["item_id"]] for entry in prediction["items"]]
            lists[row, : len(chosen)] = chosen
        position = np.argmax(lists == held_out[:, None], axis=1)
        hit = (lists == held_out[:, None]).any(axis=1)
        ndcg = np.where(hit, 1.0 / np.log2(position + 2.0), 0.0)
        metrics = beyond_accuracy.beyond_accuracy_metrics(
            lists, popularity, recommender.scorer.item_vectors, attributes
        )
        cells = [
            f"{diversity:g}",
            f"{hit.mean():.4f}",
            f"{ndcg.mean():.4f}",
            *(f"{metrics.get(name, float('nan')):.4f}" for name in beyond_accuracy.METRIC_NAMES),
            f"{seconds:.1f}",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
