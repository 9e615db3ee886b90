"""HR/NDCG on hand-computed cases, both protocols, test negatives and RMSE."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ncf_contract.seen import SeenItems
from training.dataset import build_dataset
from training.errors import DataError
from training.evaluation import (
    full_ranking_metrics,
    ranking_metrics_from_scores,
    resolve_test_negatives,
    rmse,
    sample_evaluation_negatives,
    sampled_ranking_metrics,
)


def test_rank_zero_and_rank_two() -> None:
    target = np.array([0.9, 0.5])
    candidates = np.array([[0.1, 0.2, 0.3], [0.8, 0.7, 0.1]])
    hit, ndcg = ranking_metrics_from_scores(target, candidates, k=10)
    assert hit.tolist() == [1.0, 1.0]
    assert ndcg[0] == 1.0
    assert ndcg[1] == pytest.approx(0.5)  # rank 2 -> 1 / log2(4)


def test_cutoff() -> None:
    target = np.array([0.5])
    candidates = np.array([[0.9, 0.8, 0.7, 0.1]])
    assert ranking_metrics_from_scores(target, candidates, k=3)[0].tolist() == [0.0]
    hit, ndcg = ranking_metrics_from_scores(target, candidates, k=4)
    assert hit.tolist() == [1.0] and ndcg[0] == pytest.approx(1 / math.log2(5))


def test_ties_go_in_the_targets_favour() -> None:
    hit, ndcg = ranking_metrics_from_scores(np.array([0.5]), np.array([[0.5, 0.5, 0.6]]), k=2)
    assert hit.tolist() == [1.0] and ndcg[0] == pytest.approx(1 / math.log2(3))


def test_nan_target_is_a_miss() -> None:
    hit, ndcg = ranking_metrics_from_scores(np.array([np.nan]), np.array([[0.1, 0.2]]), k=10)
    assert hit.tolist() == [0.0] and ndcg.tolist() == [0.0]


def test_sampled_metrics_call_the_scorer_once() -> None:
    calls = []
    table = np.array([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.8, 0.6]])

    def score_pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        calls.append(len(users))
        return table[users, items]

    negatives = np.array([[0, 2, 3], [0, 1, 3]])
    result = sampled_ranking_metrics(score_pairs, np.array([0, 1]), np.array([1, 2]), negatives, 1)
    assert calls == [8]
    assert result == {"hr": 1.0, "ndcg": 1.0}
    # User 0's target (item 2, score 0.5) behind item 1 (0.9): rank 1.
    result = sampled_ranking_metrics(
        score_pairs, np.array([0]), np.array([2]), np.array([[1, 3]]), 2
    )
    assert result == {"hr": 1.0, "ndcg": pytest.approx(1 / math.log2(3))}


def test_sampled_metrics_in_chunks_agree() -> None:
    rng = np.random.default_rng(0)
    table = rng.random((50, 40))
    users = np.arange(50)
    held = rng.integers(40, size=50)
    negatives = rng.integers(40, size=(50, 9))

    def score(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return table[u, i]

    whole = sampled_ranking_metrics(score, users, held, negatives, 3)
    chunked = sampled_ranking_metrics(score, users, held, negatives, 3, max_pairs_per_call=25)
    assert whole == chunked


def test_evaluation_negatives_exclude_seen_and_held_out() -> None:
    rng = np.random.default_rng(0)
    num_users, num_items = 40, 150
    mask = rng.random((num_users, num_items)) < 0.3
    users_seen, items_seen = np.nonzero(mask)
    seen = SeenItems.from_pairs(users_seen, items_seen, num_users, num_items)
    users = np.arange(num_users)
    held = np.array([rng.choice(np.flatnonzero(~row)) for row in mask])
    negatives = sample_evaluation_negatives(users, held, seen, num_items, 99, seed=7)
    assert negatives.shape == (num_users, 99)
    assert not mask[users[:, None], negatives].any()
    assert not (negatives == held[:, None]).any()
    # Distinct within a row when enough items are eligible, and fixed by the seed.
    eligible = (~mask).sum(axis=1) - 1
    for row, count in zip(negatives, eligible, strict=True):
        if count >= 99:
            assert len(np.unique(row)) == 99
    again = sample_evaluation_negatives(users, held, seen, num_items, 99, seed=7)
    assert np.array_equal(negatives, again)


def test_evaluation_negatives_when_too_few_items_repeat() -> None:
    seen = SeenItems.from_pairs(np.array([0, 0]), np.array([0, 1]), 1, 5)
    negatives = sample_evaluation_negatives(np.array([0]), np.array([2]), seen, 5, 6, seed=0)
    assert set(negatives.ravel().tolist()) <= {3, 4}


def test_evaluation_negatives_with_nothing_left_fail() -> None:
    seen = SeenItems.from_pairs(np.array([0, 0]), np.array([0, 1]), 1, 3)
    with pytest.raises(DataError, match="no item left"):
        sample_evaluation_negatives(np.array([0]), np.array([2]), seen, 3, 4, seed=0)


def test_full_ranking_excludes_seen_but_not_the_held_out_item() -> None:
    # 1 user, 6 items. Seen: items 0 and 1 score highest but must not count.
    scores = np.array([[0.99, 0.98, 0.5, 0.7, 0.1, 0.6]])
    exclude = SeenItems.from_pairs(np.array([0, 0, 0]), np.array([0, 1, 2]), 1, 6)

    def score_all(users: np.ndarray) -> np.ndarray:
        return scores[users]

    # Held-out item 2 is in `exclude` (as with all_seen) but still competes:
    # above it are items 3 (0.7) and 5 (0.6) -> rank 2.
    result = full_ranking_metrics(score_all, np.array([0]), np.array([2]), exclude, k=3)
    assert result == {"hr": 1.0, "ndcg": pytest.approx(0.5)}
    result = full_ranking_metrics(score_all, np.array([0]), np.array([2]), exclude, k=2)
    assert result["hr"] == 0.0
    # The caller's array is not modified.
    assert scores[0, 0] == 0.99


def test_full_ranking_batches_agree() -> None:
    rng = np.random.default_rng(1)
    table = rng.random((30, 25))
    mask = rng.random((30, 25)) < 0.3
    seen_users, seen_items = np.nonzero(mask)
    exclude = SeenItems.from_pairs(seen_users, seen_items, 30, 25)
    users = np.arange(30)
    held = rng.integers(25, size=30)
    expected_rank = [
        int(np.sum((table[u] > table[u, h]) & ~mask[u])) for u, h in zip(users, held, strict=True)
    ]
    expected_hr = np.mean([r < 5 for r in expected_rank])
    for batch_size in (1, 7, 1024):
        result = full_ranking_metrics(lambda u: table[u], users, held, exclude, 5, batch_size)
        assert result["hr"] == pytest.approx(expected_hr)


def test_resolve_test_negatives() -> None:
    train = pd.DataFrame({"user_id": ["0", "0", "1", "1"], "item_id": ["10", "11", "10", "12"]})
    test = pd.DataFrame({"user_id": ["0", "1"], "item_id": ["12", "11"]})
    frame = pd.DataFrame(
        {
            "user_id": ["0", "1"],
            "item_id": ["12", "11"],
            "negative_item_ids": [["10", "11"], ["12", "10"]],
        }
    )
    dataset = build_dataset(train, None, test)
    users, held, negatives = resolve_test_negatives(frame, dataset)
    assert dataset.users.ids[users].tolist() == ["0", "1"]
    assert dataset.items.ids[held].tolist() == ["12", "11"]
    assert dataset.items.ids[negatives].tolist() == [["10", "11"], ["12", "10"]]

    unknown = frame.assign(negative_item_ids=[["10", "99"], ["12", "10"]])
    with pytest.raises(DataError, match=r"1 of 2 rows.*'99'"):
        resolve_test_negatives(unknown, dataset)
    users, held, negatives = resolve_test_negatives(unknown, dataset, on_unknown="drop")
    assert len(users) == 1
    ragged = frame.assign(negative_item_ids=[["10"], ["12", "10"]])
    with pytest.raises(DataError, match="different numbers of negatives"):
        resolve_test_negatives(ragged, dataset)


def test_rmse() -> None:
    assert rmse(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0])) == pytest.approx(
        math.sqrt(4 / 3)
    )
    with pytest.raises(ValueError):
        rmse(np.array([1.0]), np.array([1.0, 2.0]))


@pytest.mark.parametrize("k", [1, 5, 12])
@pytest.mark.parametrize("block_users", [1 << 14, 7])
def test_popularity_lists_without_a_score_matrix_equal_the_ranked_rows(
    k: int, block_users: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of users (issue 16: temporaries bounded at 20M interactions) change nothing.
    import training.evaluation as evaluation
    from training.evaluation import PopularityScorer, popularity_top_k_lists, top_k_lists

    monkeypatch.setattr(evaluation, "POPULARITY_LIST_USERS", block_users)

    rng = np.random.default_rng(0)
    num_users, num_items = 60, 12
    popularity = rng.permutation(num_items).astype(np.float32)
    counts = rng.integers(0, num_items + 1, num_users)  # some users have seen everything
    counts[:3] = [0, num_items, num_items - 2]
    indices = np.concatenate(
        [np.sort(rng.choice(num_items, c, replace=False)) for c in counts]
    ).astype(np.int32)
    seen = SeenItems.from_csr(np.concatenate([[0], np.cumsum(counts)]), indices, num_items)
    users = np.array([5, 0, 1, 2, *range(6, num_users)])  # any order
    expected = top_k_lists(PopularityScorer(popularity).score_all_items, users, seen, k)
    found = popularity_top_k_lists(popularity, users, seen, k)
    np.testing.assert_array_equal(found, expected)
    assert (found[2] == -1).all() and (found[3, 2:] == -1).all()  # nothing / two items left


def test_popularity_lists_break_ties_to_the_lower_item_index() -> None:
    from training.evaluation import popularity_top_k_lists

    popularity = np.array([1, 3, 3, 0, 3, 1], dtype=np.float32)
    seen = SeenItems.from_csr(np.array([0, 0, 1]), np.array([2], dtype=np.int32), 6)
    lists = popularity_top_k_lists(popularity, np.array([0, 1]), seen, 4)
    np.testing.assert_array_equal(lists, [[1, 2, 4, 0], [1, 4, 0, 5]])
