"""HR@K and NDCG@K, the NCF paper's sampled protocol and full ranking; RMSE.

Rank convention (as in the NCF reference code): the target's rank is the number
of candidates scoring *strictly* higher, so ties go in the target's favour.
``hit = rank < k`` and ``ndcg = 1 / log2(rank + 2)`` for a hit, else 0. A NaN
target score counts as a miss; NaN candidate scores never outrank the target.

Scoring functions are called on big batches only (all (user, candidate) pairs
of the sampled protocol flattened, or a batch of users x all items for full
ranking); everything around them is array work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_contract.ranking import top_k_matrix
from ncf_contract.seen import SeenItems
from training import beyond_accuracy
from training.data import ITEM, NEGATIVES, USER
from training.dataset import Dataset
from training.errors import DataError
from training.sampling import _check_users, free_counts, sample_negatives

logger = logging.getLogger(__name__)

_MAX_ROUNDS = 10_000


def ranking_metrics_from_scores(
    target_scores: np.ndarray, candidate_scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row hit and NDCG of a target among candidates.

    Args:
        target_scores: ``[n]`` the held-out item's score.
        candidate_scores: ``[n, m]`` the other candidates' scores.
        k: Cut-off.

    Returns:
        ``(hit [n] float64 0/1, ndcg [n] float64)``.
    """
    target = np.asarray(target_scores)
    candidates = np.asarray(candidate_scores)
    if candidates.ndim != 2 or candidates.shape[0] != target.shape[0]:
        raise ValueError(
            f"expected target [n] and candidates [n, m]; got {target.shape} and {candidates.shape}"
        )
    rank = np.count_nonzero(candidates > target[:, None], axis=1)
    hit = (rank < k) & ~np.isnan(target)
    ndcg = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return hit.astype(np.float64), ndcg


def _summary(hit: np.ndarray, ndcg: np.ndarray) -> dict[str, float]:
    if len(hit) == 0:
        raise ValueError("no evaluation rows: nothing to rank")
    return {"hr": float(np.mean(hit)), "ndcg": float(np.mean(ndcg))}


def sample_evaluation_negatives(
    users: np.ndarray,
    held_out_items: np.ndarray,
    seen: SeenItems,
    num_items: int,
    num_negatives: int,
    seed: int,
) -> np.ndarray:
    """Fixed-seed negatives for the sampled protocol.

    Each row's negatives avoid the user's ``seen`` items and the row's held-out
    item, and are distinct within the row where the user has at least
    ``num_negatives`` eligible items (otherwise that row repeats items: it
    still has ``num_negatives`` columns so the result stays rectangular).

    Returns:
        ``[n, num_negatives]`` int32.

    Raises:
        DataError: A user has no eligible item at all.
    """
    users = np.asarray(users, dtype=np.int64)
    held = np.asarray(held_out_items, dtype=np.int64)
    _check_users(users, seen, num_items)
    rng = np.random.default_rng(seed)
    # Eligible = unseen and not the held-out item.
    eligible = free_counts(users, seen, num_items) - ~seen.contains(users, held)
    if len(users) and (eligible <= 0).any():
        bad = int(users[eligible <= 0][0])
        raise DataError(
            f"user index {bad} has no item left to sample as an evaluation negative "
            f"(seen everything but the held-out item among {num_items} items)"
        )
    distinct = eligible >= num_negatives
    drawn = sample_negatives(users, seen, num_items, num_negatives, rng)
    n = len(users)
    for _ in range(_MAX_ROUNDS):
        bad = drawn == held[:, None]
        if num_negatives > 1:
            order = np.argsort(drawn, axis=1, kind="stable")
            ordered = np.take_along_axis(drawn, order, axis=1)
            repeat = np.zeros_like(bad)
            repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
            repeat &= distinct[:, None]
            rows, cols = np.nonzero(repeat)
            bad[rows, order[rows, cols]] = True
        rows, cols = np.nonzero(bad)
        if len(rows) == 0:
            return drawn
        redraw = sample_negatives(users[rows], seen, num_items, 1, rng)[:, 0]
        drawn[rows, cols] = redraw
    raise RuntimeError(f"could not draw distinct evaluation negatives for {n} rows")


def sampled_ranking_metrics(
    score_pairs: Callable[[np.ndarray, np.ndarray], np.ndarray],
    users: np.ndarray,
    held_out_items: np.ndarray,
    negatives: np.ndarray,
    k: int,
    max_pairs_per_call: int = 4_000_000,
) -> dict[str, float]:
    """HR@k and NDCG@k of each held-out item ranked among its row of negatives.

    ``score_pairs(user_index [p], item_index [p]) -> scores [p]`` is called on
    all (user, candidate) pairs flattened, in chunks of at most
    ``max_pairs_per_call`` pairs (whole rows per chunk).

    Returns:
        ``{"hr": ..., "ndcg": ...}`` averaged over rows.
    """
    users = np.asarray(users, dtype=np.int64)
    held = np.asarray(held_out_items, dtype=np.int64)
    negatives = np.asarray(negatives, dtype=np.int64)
    if negatives.ndim != 2 or len(negatives) != len(users) or len(held) != len(users):
        raise ValueError(
            f"users {users.shape}, held_out_items {held.shape} and negatives "
            f"{negatives.shape} do not line up"
        )
    candidates = np.concatenate([held[:, None], negatives], axis=1)  # target in column 0
    width = candidates.shape[1]
    rows_per_call = max(1, max_pairs_per_call // width)
    scores = np.empty(candidates.shape, dtype=np.float64)
    for start in range(0, len(users), rows_per_call):
        stop = min(len(users), start + rows_per_call)
        block = candidates[start:stop]
        flat_users = np.repeat(users[start:stop], width)
        result = np.asarray(score_pairs(flat_users, block.ravel()), dtype=np.float64)
        scores[start:stop] = result.reshape(block.shape)
    hit, ndcg = ranking_metrics_from_scores(scores[:, 0], scores[:, 1:], k)
    return _summary(hit, ndcg)


def _score_blocks(
    score_all_items: Callable[[np.ndarray], np.ndarray], users: np.ndarray, batch_size: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, scores)`` per block of users; ``scores`` a writable float32 ``[b, num_items]``."""
    for start in range(0, len(users), batch_size):
        rows = slice(start, min(len(users), start + batch_size))
        batch_users = users[rows]
        scores = np.array(score_all_items(batch_users), dtype=np.float32, copy=True)
        if scores.ndim != 2 or scores.shape[0] != len(batch_users):
            raise ValueError(f"score_all_items returned shape {scores.shape}")
        yield rows, scores


def full_ranking_metrics(
    score_all_items: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    held_out_items: np.ndarray,
    exclude: SeenItems,
    k: int,
    batch_size: int = 1024,
) -> dict[str, float]:
    """HR@k and NDCG@k of each held-out item ranked among *all* items.

    ``score_all_items(user_index [b]) -> [b, num_items]``. Each user's
    ``exclude`` items are set to ``-inf`` before ranking, except the row's own
    held-out item, which always competes (so passing ``all_seen``, which
    contains it, is fine).
    """
    users = np.asarray(users, dtype=np.int64)
    held = np.asarray(held_out_items, dtype=np.int64)
    hits, ndcgs = [], []
    for rows, scores in _score_blocks(score_all_items, users, batch_size):
        batch_users, batch_held = users[rows], held[rows]
        positions = np.arange(len(batch_users))
        target = scores[positions, batch_held].copy()
        scores[exclude.cells(positions, batch_users)] = -np.inf
        # Counting "> target" over all items: the target cell itself never counts.
        rank = np.count_nonzero(scores > target[:, None], axis=1)
        hit = (rank < k) & ~np.isnan(target)
        hits.append(hit.astype(np.float64))
        ndcgs.append(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0))
    if not hits:
        raise ValueError("no evaluation rows: nothing to rank")
    return _summary(np.concatenate(hits), np.concatenate(ndcgs))


def top_k_lists(
    score_all_items: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    exclude: SeenItems,
    k: int,
    batch_size: int = 1024,
) -> np.ndarray:
    """Each user's top-``k`` items among those not in ``exclude``, best first.

    Streams over users in blocks of ``batch_size`` (one ``[b, num_items]``
    score matrix at a time) and ranks with ``ncf_contract.ranking.top_k_matrix``,
    the selection serving uses. Ties go to the lower item index; NaN scores rank last.

    Returns:
        ``[len(users), k]`` int64 item indices; ``-1`` fills the slots of a user
        with fewer than ``k`` items left.
    """
    users = np.asarray(users, dtype=np.int64)
    lists = np.full((len(users), k), -1, dtype=np.int64)
    for rows, scores in _score_blocks(score_all_items, users, batch_size):
        batch_users = users[rows]
        scores[np.isnan(scores)] = -np.finfo(np.float32).max  # NaN ranks last, still ranked
        scores[exclude.cells(np.arange(len(batch_users)), batch_users)] = -np.inf
        positions, values = top_k_matrix(scores, k)
        lists[rows, : positions.shape[1]] = np.where(np.isfinite(values), positions, -1)
    return lists


class PopularityScorer:
    """The popularity baseline: every user scores each item by its training interactions."""

    def __init__(self, popularity: np.ndarray) -> None:
        self.popularity = np.asarray(popularity, dtype=np.float32)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Popularity of ``items[j]`` (any shape; ``users`` only broadcasts)."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        return self.popularity[items]

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]``: the popularity row for every user."""
        return np.broadcast_to(self.popularity, (len(users), len(self.popularity)))


@dataclass(frozen=True)
class ListComparison:
    """Beyond-accuracy figures of a model's top-k lists and the popularity baseline's.

    Attributes:
        metrics: ``{"model": {...}, "popularity": {...}}`` (``training.beyond_accuracy``).
        recommendation_counts: Per system, ``[num_items]`` lists each item is in.
    """

    metrics: dict[str, dict[str, float]]
    recommendation_counts: dict[str, np.ndarray]


#: Users per block of ``popularity_top_k_lists``: its temporaries are ~50 bytes per seen
#: item of the block's users (1.3 GB for all 138,493 users at 20M interactions at once).
POPULARITY_LIST_USERS = 1 << 14


def popularity_top_k_lists(
    popularity: np.ndarray, users: np.ndarray, exclude: SeenItems, k: int
) -> np.ndarray:
    """``top_k_lists`` of the popularity baseline, without scoring a row per user.

    Every user ranks the items in the same order (by popularity, ties to the lower
    index), so a user's list is the first ``k`` items of that order they have not
    seen: with their seen items' ranks sorted, ``s_0 < s_1 < ...``, the ``i``-th unseen
    rank is ``i + #{j : s_j - j <= i}`` (as ``training.sampling`` draws negatives), one
    ``searchsorted`` per block of ``POPULARITY_LIST_USERS`` users. Ranking a
    ``[users, items]`` matrix instead took most of a job's evaluation at ML-20M's shape
    (138,493 x 26,744; issue 16).

    Returns:
        ``[len(users), k]`` int64 item indices, as ``top_k_lists`` returns them.
    """
    popularity = np.asarray(popularity, dtype=np.float32)
    num_items = len(popularity)
    users = np.asarray(users, dtype=np.int64)
    order = np.lexsort((np.arange(num_items), -popularity))  # best first, ties lower index
    rank = np.empty(num_items, dtype=np.int64)
    rank[order] = np.arange(num_items)
    wanted = np.arange(min(k, num_items), dtype=np.int64)
    lists = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), POPULARITY_LIST_USERS):
        block = users[start : start + POPULARITY_LIST_USERS]
        rows, items = exclude.cells(np.arange(len(block)), block)
        seen_ranks = rank[items]
        by_row = np.lexsort((seen_ranks, rows))
        rows, seen_ranks = rows[by_row], seen_ranks[by_row]
        row_starts = np.searchsorted(rows, np.arange(len(block)))
        within = np.arange(len(rows)) - row_starts[rows]
        keys = rows * (num_items + 1) + (seen_ranks - within)  # sorted: s_j - j rises in a row
        queries = np.arange(len(block), dtype=np.int64)[:, None] * (num_items + 1) + wanted
        ranks = wanted + np.searchsorted(keys, queries, side="right") - row_starts[:, None]
        lists[start : start + len(block), : len(wanted)] = np.where(
            ranks < num_items, order[np.minimum(ranks, num_items - 1)], -1
        )
    return lists


def compare_lists(
    score_all_items: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    exclude: SeenItems,
    k: int,
    popularity: np.ndarray,
    item_vectors: np.ndarray | None,
    item_attributes: np.ndarray | sp.spmatrix | None = None,
) -> ListComparison:
    """Top-k lists of the model and of popularity for ``users``, and their beyond-accuracy figures.

    Both systems' lists exclude the same ``exclude`` items; both lists' intra-list
    diversity is measured on the model's ``item_vectors``.
    """
    users = np.unique(np.asarray(users, dtype=np.int64))
    systems = {
        "model": lambda: top_k_lists(score_all_items, users, exclude, k),
        "popularity": lambda: popularity_top_k_lists(popularity, users, exclude, k),
    }
    metrics, counts = {}, {}
    for name, make_lists in systems.items():
        lists = make_lists()
        metrics[name] = beyond_accuracy.beyond_accuracy_metrics(
            lists, popularity, item_vectors, item_attributes
        )
        counts[name] = beyond_accuracy.recommendation_counts(lists, len(popularity))
    return ListComparison(metrics, counts)


def resolve_test_negatives(
    frame: pd.DataFrame, dataset: Dataset, on_unknown: str = "error"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map a :func:`training.data.read_test_negatives` frame to indices.

    Args:
        frame: Columns ``user_id``, ``item_id``, ``negative_item_ids``.
        dataset: Supplies the vocabularies.
        on_unknown: ``"error"`` (default): an id the vocabularies lack is a
            :class:`DataError` (published numbers are only reproducible with
            every row kept); ``"drop"``: rows with an unknown id are dropped
            and the count is logged as a warning.

    Returns:
        ``(users int64 [n], held_out int64 [n], negatives int64 [n, m])``.

    Raises:
        DataError: Rows of different lengths, or unknown ids with ``on_unknown="error"``.
    """
    lengths = frame[NEGATIVES].map(len).to_numpy()
    if len(frame) == 0:
        raise DataError("test_negatives has no rows")
    if (lengths != lengths[0]).any():
        values, counts = np.unique(lengths, return_counts=True)
        raise DataError(
            "test_negatives rows have different numbers of negatives "
            f"({dict(zip(values.tolist(), counts.tolist(), strict=True))}); every row "
            "needs the same number"
        )
    if lengths[0] == 0:
        raise DataError("test_negatives rows list no negative items")
    users = dataset.users.index_of(frame[USER].to_numpy(dtype=object))
    held = dataset.items.index_of(frame[ITEM].to_numpy(dtype=object))
    flat = np.array(list(chain.from_iterable(frame[NEGATIVES].to_list())), dtype=object)
    negatives = dataset.items.index_of(flat).reshape(len(frame), int(lengths[0]))
    unknown = (users < 0) | (held < 0) | (negatives < 0).any(axis=1)
    if unknown.any():
        unknown_users = pd.unique(frame[USER].to_numpy(dtype=object)[users < 0])[:5].tolist()
        unknown_items = pd.unique(
            np.concatenate(
                [frame[ITEM].to_numpy(dtype=object)[held < 0], flat[negatives.ravel() < 0]]
            )
        )[:5].tolist()
        if on_unknown != "drop":
            raise DataError(
                f"test_negatives: {int(unknown.sum())} of {len(frame)} rows name ids that no "
                f"channel has (users e.g. {unknown_users}, items e.g. {unknown_items}); the "
                "ids must match those of the train/test data (check the column names and "
                "that both files come from the same split)"
            )
        logger.warning(
            "test_negatives: dropped %d of %d rows naming unknown ids "
            "(users e.g. %s, items e.g. %s)",
            int(unknown.sum()),
            len(frame),
            unknown_users,
            unknown_items,
        )
        keep = ~unknown
        users, held, negatives = users[keep], held[keep], negatives[keep]
        if len(users) == 0:
            raise DataError("test_negatives: every row names unknown ids")
    return users, held, negatives


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error (explicit feedback)."""
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    actual = np.asarray(actual, dtype=np.float64).ravel()
    if predicted.shape != actual.shape or len(actual) == 0:
        raise ValueError(
            f"rmse needs equal, non-empty shapes; got {predicted.shape}, {actual.shape}"
        )
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))
