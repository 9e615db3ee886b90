"""Negative sampling: uniform over the items a user has *not* interacted with.

Two exact, vectorised methods. Up to ``BITSET_CELLS_LIMIT`` (user, item) cells, uniform
draws are checked against a bitset of the seen cells and only the seen ones re-drawn
(``sample_negatives``). Past it, or for what a few rounds of that leave, by rank, with
no rejection loop: for a user whose sorted seen items are ``s_0 < s_1 < ...``, the
``r``-th unseen item (0-based) is ``r + #{j : s_j - j <= r}``. The values ``s_j - j``
are non-decreasing within a row, so one global ``searchsorted`` over ``(user, s_j - j)``
keys maps a uniform rank ``r in [0, num_items - |seen(u)|)`` to an unseen item for every
cell at once. A user's own positives are therefore never drawn, by construction, and the
cost does not grow for heavy users (rejection alone would loop longest exactly on them).

A user who has seen every item has no negative to draw; that is detected up
front (``|seen(u)| >= num_items``) and raised as :class:`DataError`.
"""

from __future__ import annotations

import numpy as np

from ncf_contract.seen import SeenItems
from training.dataset import Interactions
from training.errors import DataError


def _gap_keys(seen: SeenItems, num_items: int) -> np.ndarray:
    """Sorted keys ``user * (num_items + 1) + (s_j - j)`` (computed once per ``seen``)."""

    def compute() -> np.ndarray:
        counts = seen.counts()
        rows = np.repeat(np.arange(seen.num_users, dtype=np.int64), counts)
        within = np.arange(seen.nnz, dtype=np.int64) - np.repeat(seen.indptr[:-1], counts)
        return rows * (num_items + 1) + (seen.indices.astype(np.int64) - within)

    keys: np.ndarray = seen.memo(("gap_keys", num_items), compute)
    return keys


def free_counts(user_index: np.ndarray, seen: SeenItems, num_items: int) -> np.ndarray:
    """How many items each user has *not* seen (int64)."""
    return num_items - seen.counts()[user_index]


def _check_users(user_index: np.ndarray, seen: SeenItems, num_items: int) -> None:
    if len(user_index) == 0:
        return
    if user_index.min() < 0 or user_index.max() >= seen.num_users:
        raise ValueError(
            f"user indices must lie in [0, {seen.num_users}); got "
            f"[{user_index.min()}, {user_index.max()}]"
        )
    if seen.nnz and int(seen.indices.max()) >= num_items:
        raise ValueError(
            f"seen items hold index {int(seen.indices.max())} >= num_items {num_items}"
        )
    full = free_counts(user_index, seen, num_items) <= 0
    if full.any():
        users = np.unique(user_index[full])
        raise DataError(
            f"{len(users)} user(s) (e.g. index {int(users[0])}) interacted with every one of "
            f"the {num_items} items, so no negative item can be sampled for them; remove "
            "those users or add items"
        )


#: Up to this many (user, item) cells, membership is a bitset (one bit per cell: 2.8 MB for
#: MovieLens-1M, 463 MB for MovieLens-20M's 138,493 x 26,744) and sampling is rejection
#: of the seen cells only; above it, exact sampling by rank (memory proportional to the
#: interactions). A lookup is one random read, where a draw by rank is a binary search
#: over every seen pair: 20M positives x 4 negatives took 6.4-6.6 s by rank, 2.5 s against
#: the bitset, its build included (``benchmarks/negative_sampling.py``, BENCHMARKS.md).
BITSET_CELLS_LIMIT = 1 << 32
#: Bitsets up to this size stay with their seen set for the whole job (``_bits_for``).
KEPT_BITS_BYTES = 1 << 26
_REJECTION_ROUNDS = 8
#: Rows drawn per block, either way: bounds the float64 / int64 temporaries (about 32
#: bytes per cell each) to ~130 MB at 4 negatives, instead of ~3 GB at 20M interactions;
#: the draws of ``_exact``, and so its negatives, are the same as in one block.
_BLOCK_ROWS = 1 << 20


def _seen_bits(seen: SeenItems, num_items: int) -> np.ndarray:
    """The seen cells ``user * num_items + item`` as a bitset, little-endian within bytes."""
    bits = np.zeros((seen.num_users * num_items + 7) // 8, dtype=np.uint8)
    users, items = seen.pairs()
    cells = users.astype(np.int64) * num_items + items
    np.bitwise_or.at(bits, cells >> 3, np.left_shift(1, cells & 7).astype(np.uint8))
    return bits


def _bits_for(seen: SeenItems, num_items: int, draws: int) -> np.ndarray | None:
    """The bitset to draw ``draws`` cells against, or ``None`` to draw them by rank.

    Up to ``KEPT_BITS_BYTES`` the bitset is kept with ``seen`` (built once, like its rank
    keys). A larger one (up to ``BITSET_CELLS_LIMIT`` cells) is built for the call and
    dropped after it, and only for a call that draws at least as many cells as ``seen``
    holds pairs (an epoch's negatives), where building it pays: smaller calls (the
    evaluation's negatives, their re-draws) are drawn by rank.
    """
    cells = seen.num_users * num_items
    if cells > BITSET_CELLS_LIMIT:
        return None
    if cells <= 8 * KEPT_BITS_BYTES:
        kept: np.ndarray = seen.memo(("bits", num_items), lambda: _seen_bits(seen, num_items))
        return kept
    return _seen_bits(seen, num_items) if draws >= seen.nnz else None


def _is_seen(bits: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Whether each cell's bit is set (boolean, the shape of ``cells``)."""
    return (bits[cells >> 3] >> (cells & 7).astype(np.uint8)) & 1 == 1


def _exact(
    users: np.ndarray,
    seen: SeenItems,
    num_items: int,
    shape: tuple[int, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    """Uniform unseen items by rank (see the module docstring); ``users`` int64 [n]."""
    free = free_counts(users, seen, num_items)
    ranks = (rng.random((len(users), *shape)) * free.reshape(-1, *([1] * len(shape)))).astype(
        np.int64
    )
    np.minimum(ranks, (free - 1).reshape(-1, *([1] * len(shape))), out=ranks)  # float rounding
    keys = _gap_keys(seen, num_items)
    query = (users * (num_items + 1)).reshape(-1, *([1] * len(shape))) + ranks
    below = np.searchsorted(keys, query.ravel(), side="right").reshape(query.shape)
    below -= seen.indptr[users].reshape(-1, *([1] * len(shape)))
    return ranks + below


def sample_negatives(
    user_index: np.ndarray,
    seen: SeenItems,
    num_items: int,
    num_per_row: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw ``num_per_row`` negatives per row, uniformly among the row user's unseen items.

    Draws are independent (with replacement within a row). Two exact methods,
    chosen by size (``_bits_for``): up to :data:`BITSET_CELLS_LIMIT` cells, uniform
    draws with the seen cells re-drawn (only those, for a few rounds; what is still
    left is drawn by rank); above it, or for a small draw against a large bitset,
    every cell by rank. Either way the result is uniform over the unseen items and
    never a seen one.

    Returns:
        ``[len(user_index), num_per_row]`` int32 item indices, none in ``seen[user]``.

    Raises:
        DataError: A user has seen every item (no negative exists), detected
            up front from the row lengths of ``seen``.
    """
    users = np.asarray(user_index, dtype=np.int64)
    _check_users(users, seen, num_items)
    if len(users) == 0 or num_per_row == 0:
        return np.zeros((len(users), num_per_row), dtype=np.int32)
    bits = _bits_for(seen, num_items, len(users) * num_per_row)
    found = np.empty((len(users), num_per_row), dtype=np.int32)
    for start in range(0, len(users), _BLOCK_ROWS):
        block = users[start : start + _BLOCK_ROWS]
        found[start : start + _BLOCK_ROWS] = (
            _exact(block, seen, num_items, (num_per_row,), rng)
            if bits is None
            else _by_rejection(block, bits, seen, num_items, num_per_row, rng)
        )
    return found


def _by_rejection(
    users: np.ndarray,
    bits: np.ndarray,
    seen: SeenItems,
    num_items: int,
    num_per_row: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Uniform draws ``[len(users), num_per_row]``; the seen ones re-drawn, the rest by rank.

    Seen draws are re-drawn for ``_REJECTION_ROUNDS`` rounds; what is still seen then
    (a user who has seen most of the catalog) is drawn by rank (``_exact``).
    """
    drawn = rng.integers(0, num_items, size=(len(users), num_per_row), dtype=np.int64)
    base = users * num_items
    rows, cols = np.nonzero(_is_seen(bits, base[:, None] + drawn))
    for _ in range(_REJECTION_ROUNDS):
        if len(rows) == 0:
            break
        again = rng.integers(0, num_items, size=len(rows), dtype=np.int64)
        drawn[rows, cols] = again
        rejected = _is_seen(bits, base[rows] + again)
        rows, cols = rows[rejected], cols[rejected]
    if len(rows):
        drawn[rows, cols] = _exact(users[rows], seen, num_items, (), rng)
    return drawn


#: Positives per block when an epoch is arranged: bounds the temporaries of
#: ``training_examples`` (a few bytes per example of the block).
_ARRANGE_BLOCK = 1 << 20


def training_examples(
    train: Interactions,
    seen: SeenItems,
    num_items: int,
    num_negatives: int,
    rng: np.random.Generator,
    shuffle: bool = True,
    positive_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """One epoch of implicit-feedback examples, each positive followed by its negatives.

    Every positive (label 1) is followed by ``num_negatives`` fresh negatives for it
    (label 0, drawn among the user's unseen items in ``seen``); these groups come in
    the order ``rng.permutation(len(train))`` (``shuffle=False``: the order of ``train``).

    Shuffling whole groups rather than single examples keeps what a batch learns from
    (the same positives, each with its own negatives, in expectation) while a batch of
    ``B`` examples holds about ``B / (1 + num_negatives)`` distinct users instead of
    ``B``: the lazy optimizer's user-row gathers and scatters shrink by that factor
    (issue 16), and the arrangement is a permutation of the positives, not of every
    example (BENCHMARKS.md, "Examples grouped by positive").

    Args:
        train: The positives.
        seen: Each user's items that are never drawn as negatives.
        num_items: Items to draw from.
        num_negatives: Negatives per positive.
        rng: The epoch's random stream (negatives, then the shuffle).
        shuffle: Whether to shuffle the groups.
        positive_weights: Per train interaction, a loss weight that each of its
            negatives carries too (``None``: no weights).

    Returns:
        ``(users int32, items int32, labels float32, weights float32 or None)``, each
        of length ``len(train) * (1 + num_negatives)``.
    """
    users = train.user_index.astype(np.int32, copy=False)
    positives = train.item_index.astype(np.int32, copy=False)
    negatives = sample_negatives(users, seen, num_items, num_negatives, rng)
    n = len(users)
    group = 1 + num_negatives
    order = rng.permutation(n) if shuffle else None
    out_users = np.empty((n, group), dtype=np.int32)
    out_items = np.empty((n, group), dtype=np.int32)
    labels = np.zeros((n, group), dtype=np.float32)
    labels[:, 0] = 1.0
    weights = None if positive_weights is None else np.empty((n, group), dtype=np.float32)
    for start in range(0, n, _ARRANGE_BLOCK):
        block = slice(start, start + _ARRANGE_BLOCK)
        rows = np.arange(start, min(start + _ARRANGE_BLOCK, n)) if order is None else order[block]
        out_users[block] = users[rows, None]
        out_items[block, 0] = positives[rows]
        out_items[block, 1:] = negatives[rows]
        if weights is not None:
            assert positive_weights is not None
            weights[block] = positive_weights[rows, None]
    return (
        out_users.reshape(-1),
        out_items.reshape(-1),
        labels.reshape(-1),
        None if weights is None else weights.reshape(-1),
    )
