"""What serving's ``diversity`` does to accuracy and diversity on MovieLens-1M test users.

For each ``diversity`` value, the served top-10 of every test user of the NCF
split (``../shared/data/ml-1m-ncf``) comes from the real
``inference.recommender.Recommender`` of a model directory, with each user's
*training* items excluded (the model directory's own seen matrix also holds the
test items, which would hide the held-out item). Reported per value:

- HR@10 / NDCG@10 of the held-out item in that list, two ways: the NCF paper's
  protocol (the list drawn from the held-out item and its 99 fixed negatives of
  ``ml-1m.test.negative``, sent as ``candidate_item_ids``; MMR then re-ranks the
  best 50 of those 100) and full ranking (the list drawn from every unseen item);
- the beyond-accuracy figures of ``training.beyond_accuracy`` on the lists
  (ILD on the model's unit item vectors, and on the MovieLens genres when
  ``../shared/data/ml-1m-meta/movies.dat`` is there).

Usage: .venv/bin/python benchmarks/diversity_sweep.py [--model-dir DIR]
    [--diversity 0 0.25 0.5] [--popularity-penalty 0] [--popularity]
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
from training import beyond_accuracy, evaluation  # noqa: E402

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


def served_lists(
    recommender: Recommender, requests: list[RecommendRequest], item_index: dict[str, int]
) -> tuple[np.ndarray, float]:
    """``[users, K]`` item indices (``-1`` empty) of the served lists, and the seconds taken."""
    started = time.perf_counter()
    predictions = recommender.recommend(requests)
    seconds = time.perf_counter() - started
    lists = np.full((len(requests), K), -1, dtype=np.int64)
    for row, prediction in enumerate(predictions):
        chosen = [item_index[entry["item_id"]] for entry in prediction["items"]]
        lists[row, : len(chosen)] = chosen
    return lists, seconds


def hit_and_ndcg(lists: np.ndarray, held_out: np.ndarray) -> tuple[float, float]:
    """HR@K and NDCG@K of each row's held-out item in its list."""
    found = lists == held_out[:, None]
    ndcg = np.where(found.any(axis=1), 1.0 / np.log2(np.argmax(found, axis=1) + 2.0), 0.0)
    return float(found.any(axis=1).mean()), float(ndcg.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "benchmarks/results/ml1m-model")
    parser.add_argument("--diversity", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    parser.add_argument("--popularity-penalty", type=float, default=0.0)
    parser.add_argument(
        "--popularity", action="store_true", help="add the popularity baseline's full-ranking row"
    )
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
    held_out_users = test[0].map(user_index).to_numpy()
    # "(user,item)\tneg\tneg..." per line, in the order of ml-1m.test.rating.
    negative_lines = (DATA / "ml-1m-ncf" / "ml-1m.test.negative").read_text().splitlines()
    candidates = [
        (line.split("\t", 1)[0].strip("()").split(",")[1], *line.split("\t")[1:])
        for line in negative_lines
    ]
    popularity = artifacts.item_popularity
    attributes = genre_attributes(artifacts.item_ids.tolist())
    print(
        f"model {args.model_dir}: {artifacts.metadata.model_type}, "
        f"{artifacts.num_users} users x {artifacts.num_items} items; {len(users)} test users; "
        f"k={K}; popularity_penalty {args.popularity_penalty}"
    )
    header = [
        "diversity",
        "HR@10 (NCF protocol)",
        "NDCG@10 (NCF protocol)",
        "HR@10 (full)",
        "NDCG@10 (full)",
        *beyond_accuracy.METRIC_NAMES,
        "seconds (full)",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for diversity in args.diversity:
        settings = {"diversity": diversity, "popularity_penalty": args.popularity_penalty}
        sampled, _ = served_lists(
            recommender,
            [
                RecommendRequest(user_id=user, k=K, candidate_item_ids=tuple(ids), **settings)
                for user, ids in zip(users, candidates, strict=True)
            ],
            item_index,
        )
        lists, seconds = served_lists(
            recommender, [RecommendRequest(user_id=u, k=K, **settings) for u in users], item_index
        )
        metrics = beyond_accuracy.beyond_accuracy_metrics(
            lists, popularity, recommender.scorer.item_vectors, attributes
        )
        cells = [
            f"{diversity:g}",
            *(f"{value:.4f}" for value in hit_and_ndcg(sampled, held_out)),
            *(f"{value:.4f}" for value in hit_and_ndcg(lists, held_out)),
            *(f"{metrics.get(name, float('nan')):.4f}" for name in beyond_accuracy.METRIC_NAMES),
            f"{seconds:.1f}",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
    if args.popularity:
        # The popularity baseline's full-ranking lists of the same users, same exclusions.
        lists = evaluation.top_k_lists(
            evaluation.PopularityScorer(popularity).score_all_items,
            held_out_users,
            train_seen,
            K,
        )
        metrics = beyond_accuracy.beyond_accuracy_metrics(
            lists, popularity, recommender.scorer.item_vectors, attributes
        )
        cells = [
            "popularity",
            "",
            "",
            *(f"{value:.4f}" for value in hit_and_ndcg(lists, held_out)),
            *(f"{metrics.get(name, float('nan')):.4f}" for name in beyond_accuracy.METRIC_NAMES),
            "",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
