"""Served scores from a request's history against scores by user id, on MovieLens-1M.

For each model type given, the real ``train`` runs on the NCF split
(``train_ml1m.run_ours``), the model directory is loaded as the server loads
it, and each test user's held-out item is ranked against its 99 exact
negatives (the NCF protocol) twice, side by side: scored by ``user_id`` (the
trained user) and scored from ``history`` = the user's interactions in the
model minus the test item (as a user unknown to the model would send them:
exact for ease, a fold-in for gmf and ials). Prints HR@10 and NDCG@10 of both.

Usage: .venv/bin/python benchmarks/history_ml1m.py [--model-type ials ease gmf]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from train_ml1m import DATA, RESULTS, run_ours

from inference.instances import ScoreRequest
from inference.recommender import Recommender
from training.evaluation import ranking_metrics_from_scores

CHUNK = 256


def test_cases() -> list[tuple[str, str, list[str]]]:
    """``(user_id, test item, 99 negatives)`` per line of the NCF ``.test.negative`` file."""
    cases = []
    for line in (DATA / "ml-1m.test.negative").read_text().splitlines():
        head, *negatives = line.split("\t")
        user, item = head.strip("()").split(",")
        cases.append((user, item, [n for n in negatives if n]))
    return cases


def evaluate(recommender: Recommender, use_history: bool) -> tuple[dict[str, float], float]:
    cases = test_cases()
    targets, candidates = [], []
    started = time.perf_counter()
    for start in range(0, len(cases), CHUNK):
        requests = []
        for user, item, negatives in cases[start : start + CHUNK]:
            history = None
            if use_history:
                seen = recommender.seen.row(recommender.user_index[user])
                held_out = recommender.item_index[item]
                history = tuple(recommender.item_id_list[p] for p in seen if p != held_out)
            requests.append(
                ScoreRequest(
                    user_id=None if use_history else user,
                    item_ids=(item, *negatives),
                    history=history,
                )
            )
        for answer in recommender.score(requests):
            scores = np.array(answer["scores"], dtype=np.float64)
            targets.append(scores[0])
            candidates.append(scores[1:])
    seconds = time.perf_counter() - started
    hit, ndcg = ranking_metrics_from_scores(np.array(targets), np.array(candidates), 10)
    return {"hr@10": float(hit.mean()), "ndcg@10": float(ndcg.mean())}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", nargs="+", default=["ials", "ease", "gmf"])
    args = parser.parse_args()
    for model_type in args.model_type:
        run = run_ours({"model_type": model_type, "tuning": "off"})  # each family at its defaults
        recommender = Recommender.from_model_dir(RESULTS / "ml1m-model")
        by_user, user_seconds = evaluate(recommender, use_history=False)
        by_history, history_seconds = evaluate(recommender, use_history=True)
        print(
            f"{model_type}: train reported test HR@10={run['hr@10']:.4f}; served by user_id "
            f"HR@10={by_user['hr@10']:.4f} NDCG@10={by_user['ndcg@10']:.4f} "
            f"({user_seconds:.1f} s); served from history HR@10={by_history['hr@10']:.4f} "
            f"NDCG@10={by_history['ndcg@10']:.4f} ({history_seconds:.1f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
