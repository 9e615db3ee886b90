"""Beyond-accuracy metrics of top-k lists: coverage, concentration, novelty, diversity, bias.

Every function takes the top-k lists as a ``[users, k]`` integer array of item
indices, best first, with the users' seen items already excluded
(``training.evaluation.top_k_lists`` makes them); ``-1`` marks an empty slot
(a user with fewer than ``k`` items left to recommend). Popularity is the
``[num_items]`` count of training interactions per item. Everything is
vectorised NumPy (no TensorFlow), so the same code scores any model family and
the popularity baseline.

Definitions follow reference implementations, cited per function:

- Microsoft Recommenders, ``recommenders/evaluation/python_evaluation.py``
  (v1.2.1): ``catalog_coverage``, ``distributional_coverage``, ``novelty``,
  ``diversity`` (with ``item_sim_measure="item_feature_vector"``).
- RecBole, ``recbole/evaluator/metrics.py``: ``GiniIndex``, ``AveragePopularity``.
- Elliot, ``elliot/evaluation/metrics/bias/{arp,aplt}`` and its
  ``Popularity.get_short_head`` / ``get_long_tail``: ARP, APLT and the long
  tail (items outside the most popular ones that together make up 80% of the
  training interactions).

``tests/training/test_beyond_accuracy.py`` checks each against a hand-computed
case and against figures the reference implementations produced.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ncf_contract.ranking import unit_rows

#: Metric names as they appear in ``metrics.json``, the report and selection constraints.
COVERAGE = "coverage"
DISTRIBUTIONAL_COVERAGE = "distributional_coverage"
GINI = "gini"
NOVELTY = "novelty"
ILD = "ild"
ILD_ATTRIBUTES = "ild_attributes"
ARP = "arp"
APLT = "aplt"
METRIC_NAMES = (
    COVERAGE,
    DISTRIBUTIONAL_COVERAGE,
    GINI,
    NOVELTY,
    ILD,
    ILD_ATTRIBUTES,
    ARP,
    APLT,
)
#: The share of training interactions the short head makes up (Elliot's ``pop_ratio``).
SHORT_HEAD_SHARE = 0.8
#: Users per block in ``intra_list_diversity`` (bounds the ``[users, k, d]`` gather).
_ILD_BLOCK_USERS = 2048


def _check_lists(lists: np.ndarray, num_items: int) -> np.ndarray:
    lists = np.asarray(lists)
    if lists.ndim != 2 or not np.issubdtype(lists.dtype, np.integer):
        raise ValueError(
            f"top-k lists must be a 2-D integer array; got {lists.dtype} {lists.shape}"
        )
    if lists.size and (lists.min() < -1 or lists.max() >= num_items):
        raise ValueError(
            f"top-k lists hold item indices in [0, {num_items}) or -1 for an empty slot; "
            f"got values from {int(lists.min())} to {int(lists.max())}"
        )
    return lists.astype(np.int64, copy=False)


def _popularity(popularity: np.ndarray) -> np.ndarray:
    popularity = np.asarray(popularity, dtype=np.float64).reshape(-1)
    if popularity.size == 0 or (popularity < 0).any() or popularity.sum() <= 0:
        raise ValueError(
            "item popularity must be non-negative counts with at least one interaction"
        )
    return popularity


def _per_user_mean(lists: np.ndarray, item_values: np.ndarray) -> float:
    """Mean over users (with at least one item) of the mean of ``item_values`` over the list."""
    valid = lists >= 0
    lengths = valid.sum(axis=1)
    values = np.where(valid, item_values[np.maximum(lists, 0)], 0.0)
    users = lengths > 0
    if not users.any():
        return float("nan")
    return float(np.mean(values.sum(axis=1)[users] / lengths[users]))


def recommendation_counts(lists: np.ndarray, num_items: int) -> np.ndarray:
    """``[num_items]`` int64: how many lists recommend each item."""
    lists = _check_lists(lists, num_items)
    return np.bincount(lists[lists >= 0], minlength=num_items).astype(np.int64)


def catalog_coverage(lists: np.ndarray, popularity: np.ndarray) -> float:
    """Distinct items recommended to anyone, over the items in training.

    Recommenders' ``catalog_coverage`` (Shani and Gunawardana, *Evaluating
    Recommendation Systems*, 2010): ``|distinct recommended| / |distinct training items|``.
    """
    popularity = _popularity(popularity)
    counts = recommendation_counts(lists, len(popularity))
    return float(np.count_nonzero(counts) / np.count_nonzero(popularity))


def distributional_coverage(lists: np.ndarray, num_items: int) -> float:
    """Entropy (bits) of how recommendations spread over items.

    Recommenders' ``distributional_coverage`` (Shani and Gunawardana 2010, eq. 21):
    ``-sum_i p(i) log2 p(i)`` with ``p(i)`` item ``i``'s share of all recommendations.
    ``log2(num_items)`` when every item is recommended equally often, 0 when one is.
    """
    counts = recommendation_counts(lists, num_items)
    total = counts.sum()
    if total == 0:
        return float("nan")
    shares = counts[counts > 0] / total
    return float(-np.sum(shares * np.log2(shares)))


def gini_index(lists: np.ndarray, num_items: int) -> float:
    """Gini index of recommendation counts over the whole catalogue (0 even, near 1 concentrated).

    RecBole's ``GiniIndex``: with ``P(1) <= ... <= P(n)`` the counts of all
    ``n = num_items`` items (never-recommended items count 0),
    ``sum_j (2j - n - 1) P(j) / (n sum_j P(j))``.
    """
    counts = np.sort(recommendation_counts(lists, num_items)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    ranks = np.arange(1, num_items + 1, dtype=np.float64)
    return float(np.sum((2 * ranks - num_items - 1) * counts) / (num_items * total))


def novelty(lists: np.ndarray, popularity: np.ndarray) -> float:
    """Mean self-information ``-log2(popularity / interactions)`` of the recommended items.

    Recommenders' ``novelty`` (Castells, Vargas and Wang, ECIR 2011, item
    choice model): averaged over every recommendation made. As in the
    reference, which joins the recommendations to the training items, an item
    with no training interaction contributes 0 (its self-information is unbounded).
    """
    popularity = _popularity(popularity)
    lists = _check_lists(lists, len(popularity))
    with np.errstate(divide="ignore"):
        information = np.where(popularity > 0, -np.log2(popularity / popularity.sum()), 0.0)
    recommended = lists[lists >= 0]
    if recommended.size == 0:
        return float("nan")
    return float(information[recommended].mean())


def intra_list_diversity(lists: np.ndarray, vectors: np.ndarray | sp.spmatrix) -> float:
    """Mean over users of ``1 -`` the mean cosine similarity of the pairs in their list.

    Recommenders' ``diversity`` with ``item_sim_measure="item_feature_vector"``
    (Ziegler et al., *Improving Recommendation Lists Through Topic
    Diversification*, 2005): each unordered pair of distinct items counts once;
    users with fewer than two items have no pair and are left out. A zero
    vector has cosine 0 with everything.

    Args:
        lists: ``[users, k]`` item indices (``-1`` empty).
        vectors: ``[num_items, d]`` item vectors (model embeddings), dense, or a
            ``scipy.sparse`` matrix (item attributes, e.g. TF-IDF rows).
    """
    unit: np.ndarray | sp.csr_matrix
    if sp.issparse(vectors):
        unit = sp.csr_matrix(vectors, dtype=np.float64)
        norms = np.sqrt(np.asarray(unit.multiply(unit).sum(axis=1)).ravel())
        unit = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ unit)
    else:
        unit = unit_rows(np.asarray(vectors))
    lists = _check_lists(lists, unit.shape[0])
    diversities = []
    for start in range(0, len(lists), _ILD_BLOCK_USERS):
        block = lists[start : start + _ILD_BLOCK_USERS]
        valid = block >= 0
        lengths = valid.sum(axis=1)
        # Sum over ordered pairs i != j of <v_i, v_j> = |sum v|^2 - sum |v_i|^2.
        if isinstance(unit, np.ndarray):
            gathered = unit[np.maximum(block, 0)] * valid[:, :, None]  # [b, k, d], empty 0
            summed = gathered.sum(axis=1, dtype=np.float64)  # [b, d]
            squared_norms = np.einsum("bkd,bkd->b", gathered, gathered, dtype=np.float64)
            pair_sums = np.einsum("bd,bd->b", summed, summed) - squared_norms
        else:
            # Sparse: one [b, b * k] 0/1 matrix sums each user's rows (empty slots weigh 0).
            rows = unit[np.maximum(block, 0).ravel()]
            owner = sp.csr_matrix(
                (
                    valid.ravel().astype(np.float64),
                    (np.repeat(np.arange(len(block)), block.shape[1]), np.arange(block.size)),
                ),
                shape=(len(block), block.size),
            )
            summed = owner @ rows
            squared_norms = owner @ np.asarray(rows.multiply(rows).sum(axis=1)).ravel()
            pair_sums = np.asarray(summed.multiply(summed).sum(axis=1)).ravel() - squared_norms
        users = lengths >= 2
        pairs = lengths[users] * (lengths[users] - 1)
        diversities.append(1.0 - pair_sums[users] / pairs)
    values = np.concatenate(diversities) if diversities else np.empty(0)
    return float(values.mean()) if values.size else float("nan")


def average_recommendation_popularity(lists: np.ndarray, popularity: np.ndarray) -> float:
    """ARP: mean over users of the mean training popularity of their list.

    Elliot's ``ARP`` and RecBole's ``AveragePopularity`` (Yin et al., VLDB 2012).
    """
    popularity = _popularity(popularity)
    return _per_user_mean(_check_lists(lists, len(popularity)), popularity)


def long_tail_items(popularity: np.ndarray, head_share: float = SHORT_HEAD_SHARE) -> np.ndarray:
    """``[num_items]`` bool: the items outside the short head.

    Elliot's ``get_short_head``: items in decreasing popularity (ties in index
    order) join the short head until together they make up ``head_share`` of
    all training interactions; the item that reaches the share is in the head.
    Everything else, items never seen in training included, is the long tail.
    """
    popularity = _popularity(popularity)
    order = np.argsort(-popularity, kind="stable")
    cumulative = np.cumsum(popularity[order])
    head_size = int(np.searchsorted(cumulative, head_share * popularity.sum(), side="left")) + 1
    tail = np.ones(len(popularity), dtype=bool)
    tail[order[:head_size]] = False
    return tail


def average_percentage_long_tail(
    lists: np.ndarray, popularity: np.ndarray, head_share: float = SHORT_HEAD_SHARE
) -> float:
    """APLT: mean over users of the share of their list that lies in the long tail.

    Elliot's ``APLT`` (Abdollahpouri, Burke and Mobasher, RecSys 2017), with the
    long tail of ``long_tail_items``.
    """
    tail = long_tail_items(popularity, head_share).astype(np.float64)
    return _per_user_mean(_check_lists(lists, len(tail)), tail)


def beyond_accuracy_metrics(
    lists: np.ndarray,
    popularity: np.ndarray,
    item_vectors: np.ndarray | None,
    item_attributes: np.ndarray | sp.spmatrix | None = None,
) -> dict[str, float]:
    """Every metric of this module for one set of top-k lists.

    Args:
        lists: ``[users, k]`` item indices, best first, seen items excluded (``-1`` empty).
        popularity: ``[num_items]`` training interactions per item.
        item_vectors: ``[num_items, d]`` the model's item vectors (for ``ild``;
            ``None`` for a model without any: no ``ild``).
        item_attributes: ``[num_items, a]`` item attribute vectors, dense or
            ``scipy.sparse`` (for ``ild_attributes``), if the data has any.

    Returns:
        ``{coverage, distributional_coverage, gini, novelty, ild, arp, aplt}``
        (``ild`` with item vectors) and ``ild_attributes`` when attributes are given.

    Raises:
        ValueError: Shapes disagree or an index lies outside the catalogue.
    """
    popularity = _popularity(popularity)
    num_items = len(popularity)
    metrics = {
        COVERAGE: catalog_coverage(lists, popularity),
        DISTRIBUTIONAL_COVERAGE: distributional_coverage(lists, num_items),
        GINI: gini_index(lists, num_items),
        NOVELTY: novelty(lists, popularity),
        ARP: average_recommendation_popularity(lists, popularity),
        APLT: average_percentage_long_tail(lists, popularity),
    }
    if item_vectors is not None:
        if len(item_vectors) != num_items:
            raise ValueError(f"{len(item_vectors)} item vectors for {num_items} items")
        metrics[ILD] = intra_list_diversity(lists, item_vectors)
    if item_attributes is not None:
        if item_attributes.shape[0] != num_items:
            raise ValueError(
                f"{item_attributes.shape[0]} item attribute rows for {num_items} items"
            )
        metrics[ILD_ATTRIBUTES] = intra_list_diversity(lists, item_attributes)
    return metrics
