"""Ranking helpers both halves use: top-k selection and the unit item vectors.

- ``top_k_matrix``: the ``k`` best columns of every row of a score matrix, best
  first, in one ``np.argpartition`` (O(columns)) plus a sort of the ``k``
  winners. Serving ranks requests with it; training ranks validation and test
  users with it, so both produce the same lists from the same scores.
- ``unit_item_vectors``: the item vectors of a model directory's weights, each
  tower's embedding normalised to unit length before concatenation and the
  result normalised again (for EASE, the unit rows of the item-item matrix:
  two items are alike when they raise the same items' scores). Serving's
  similar items and diversity re-ranking and training's intra-list diversity
  all measure cosine on these.
- ``pairs_from_rows``: scores of (user, item) pairs read off whole score rows,
  for models that score a user's whole catalog at once (EASE, the blend).
- ``standardise_rows``: each row of a score matrix minus its mean, over its
  standard deviation; the ``blend`` family mixes two models' rows on this common
  scale, in training and in serving alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def top_k_matrix(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the positions and values of the ``k`` largest entries, best first.

    Ties keep the lower position first, so results are deterministic. Entries
    are returned whatever their value (``-inf`` marks an excluded entry; the
    caller decides what to do with those).

    Args:
        matrix: ``[rows, columns]`` scores.
        k: How many per row; at most ``columns`` are returned.

    Returns:
        ``(positions [rows, min(k, columns)] intp, values [rows, min(k, columns)])``.
    """
    rows, columns = matrix.shape
    k = max(0, min(int(k), columns))
    if k == 0 or rows == 0:
        return np.empty((rows, k), np.intp), np.empty((rows, k), matrix.dtype)
    if k < columns:
        # The k largest sit (unordered) in the last k slots: no negated copy of the matrix.
        candidates = np.argpartition(matrix, columns - k, axis=1)[:, columns - k :]
    else:
        candidates = np.broadcast_to(np.arange(columns), (rows, columns))
    values = np.take_along_axis(matrix, candidates, axis=1)
    # Sort by value descending, then position ascending.
    order = np.lexsort((candidates, -values), axis=1)
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(values, order, axis=1)


#: Users scored per block by ``pairs_from_rows`` (bounds the ``[users, items]`` block).
ROW_BLOCK_USERS = 512


def pairs_from_rows(
    score_all_items: Callable[[np.ndarray], np.ndarray], users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """Scores of aligned ``(users[j], items[j])`` read off whole score rows, same shape.

    For models that score a user's whole catalog at once (EASE, the blend): each
    distinct user's row is computed once, ``ROW_BLOCK_USERS`` users at a time.
    """
    users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
    flat_items = items.reshape(-1).astype(np.intp)
    distinct, position = np.unique(users.reshape(-1), return_inverse=True)
    out = np.empty(len(flat_items), dtype=np.float32)
    for start in range(0, len(distinct), ROW_BLOCK_USERS):
        block = score_all_items(distinct[start : start + ROW_BLOCK_USERS])
        mine = (position >= start) & (position < start + ROW_BLOCK_USERS)
        out[mine] = block[position[mine] - start, flat_items[mine]]
    return out.reshape(users.shape)


def standardise_rows(scores: np.ndarray) -> np.ndarray:
    """Each row of ``scores`` (``[rows, columns]``) as z-scores over its columns, float32.

    A constant row becomes zeros.
    """
    scores = np.asarray(scores, dtype=np.float32)
    mean = scores.mean(axis=1, keepdims=True)
    spread = scores.std(axis=1, keepdims=True)
    return ((scores - mean) / np.maximum(spread, np.float32(1e-12))).astype(np.float32)


def unit_rows(matrix: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``matrix`` as float32, every row scaled to unit length (zero rows stay 0).

    One pass for the norms (``einsum``, no squared temporary) and one for the product:
    0.1 s for 1M x 64 on one core, where ``np.linalg.norm`` and a division took 0.6-1.3 s
    at a serving worker's start (issue 16). The result is C-contiguous, or written to
    ``out`` (``[rows, columns]`` float32, which may be ``matrix`` itself or a column slice
    of a wider array) and returned.
    """
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    scale = np.float32(1.0) / np.maximum(norms, np.float32(1e-12))
    return np.multiply(matrix, scale[:, None], out=out, dtype=np.float32)


def unit_item_vectors(weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[num_items, d]`` unit item vectors from a model directory's weight arrays.

    The GMF and MLP item embeddings present (``gmf_item_embedding``,
    ``mlp_item_embedding``) are each normalised first, so neither dominates by
    scale, then concatenated and normalised again: the cosine of two items is
    one dot product.

    An EASE model's vectors are the unit rows of ``ease_item_item`` (row ``i`` holds what
    item ``i`` adds to every item's score); a blend's are its iALS part's
    (``gmf_item_embedding``).

    Raises:
        ValueError: ``weights`` has no item embedding.
    """
    if "ease_item_item" in weights and "blend_weights" not in weights:
        return unit_rows(weights["ease_item_item"])
    towers = [
        np.asarray(weights[name])
        for name in ("gmf_item_embedding", "mlp_item_embedding")
        if name in weights
    ]
    if not towers:
        raise ValueError(
            f"no item embedding among the weights {sorted(weights)}; expected "
            "gmf_item_embedding and/or mlp_item_embedding"
        )
    if len(towers) == 1:  # one tower: its unit rows already are the result
        return unit_rows(towers[0])
    # Each tower's unit rows written into its columns of one array, then that array
    # normalised in place: the values of normalising the concatenation, without the
    # concatenated copy and a second result (at 1M x 96 items 1.3-2.1 s -> 0.25 s).
    unit = np.empty((len(towers[0]), sum(t.shape[1] for t in towers)), dtype=np.float32)
    start = 0
    for tower in towers:
        unit_rows(tower, out=unit[:, start : start + tower.shape[1]])
        start += tower.shape[1]
    return unit_rows(unit, out=unit)
