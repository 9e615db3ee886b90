"""Synthetic user–item interactions with learnable structure, for the demo and the tests.

Users and items belong to latent taste clusters; a user mostly interacts with
items of their own cluster, favouring popular ones, so a collaborative model can
beat popularity by a clear margin and tests can assert that it learned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_interactions(
    num_users: int = 200,
    num_items: int = 120,
    interactions_per_user: int = 20,
    num_clusters: int = 4,
    in_cluster_share: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """Draw a clustered implicit/explicit interaction log.

    Args:
        num_users: Users, ids ``"u0" .. "u{n-1}"``.
        num_items: Items, ids ``"i0" .. "i{n-1}"``.
        interactions_per_user: Distinct items each user rates.
        num_clusters: Latent taste clusters shared by users and items.
        in_cluster_share: Probability mass a user puts on their own cluster.
        seed: Random seed; the same seed gives the same frame.

    Returns:
        Columns ``user_id`` (str), ``item_id`` (str), ``rating`` (float, 1..5,
        higher inside the user's cluster) and ``timestamp`` (int seconds,
        increasing per user), one row per (user, item), ordered by user and time.
    """
    if interactions_per_user >= num_items:
        raise ValueError(
            f"interactions_per_user ({interactions_per_user}) must be below num_items ({num_items})"
        )
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(num_clusters, size=num_users)
    item_cluster = np.arange(num_items) % num_clusters
    item_popularity = rng.zipf(1.6, size=num_items).clip(max=50).astype(float)

    same = item_cluster[None, :] == user_cluster[:, None]  # [users, items]
    weight = item_popularity[None, :] * np.where(
        same, in_cluster_share / same.sum(axis=1, keepdims=True), 0.0
    )
    weight += item_popularity[None, :] * np.where(
        same, 0.0, (1 - in_cluster_share) / (~same).sum(axis=1, keepdims=True)
    )
    # Gumbel top-k: for each user, a weighted sample of distinct items without a Python loop.
    keys = np.log(weight) - np.log(-np.log(rng.random(weight.shape)))
    chosen = np.argpartition(-keys, interactions_per_user - 1, axis=1)[:, :interactions_per_user]

    users = np.repeat(np.arange(num_users), interactions_per_user)
    items = chosen.ravel()
    in_cluster = item_cluster[items] == user_cluster[users]
    rating = np.clip(
        np.where(in_cluster, 4.2, 2.2) + rng.normal(0, 0.7, size=len(items)), 1, 5
    ).round()
    start = rng.integers(1_500_000_000, 1_600_000_000, size=num_users)
    offsets = rng.permutation(len(items)) % 10_000 * 60
    timestamp = np.repeat(start, interactions_per_user) + offsets
    frame = pd.DataFrame(
        {
            "user_id": np.char.add("u", users.astype(str)),
            "item_id": np.char.add("i", items.astype(str)),
            "rating": rating.astype(float),
            "timestamp": timestamp.astype(np.int64),
        }
    )
    return frame.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


def make_item_attributes(num_items: int = 120, num_clusters: int = 4) -> pd.DataFrame:
    """Attributes of :func:`make_interactions`' items that reveal their taste cluster.

    Columns ``item_id``, ``genres`` (multi-valued, ``|``-separated: the cluster's
    genre ``g<c>`` plus a genre shared by every other item), ``title`` (free text
    naming the cluster's theme word) and ``price`` (numeric, one distinct value per item).
    """
    items = np.arange(num_items)
    cluster = items % num_clusters
    themes = np.array(["space", "ocean", "forest", "desert", "arctic", "jungle", "city", "farm"])
    genres = np.char.add("g", cluster.astype(str))
    genres = np.where(items % 2 == 0, np.char.add(genres, "|common"), genres)
    titles = [
        f"The {themes[c % len(themes)]} story number {i}"
        for i, c in zip(items, cluster, strict=True)
    ]
    return pd.DataFrame(
        {
            "item_id": np.char.add("i", items.astype(str)),
            "genres": genres,
            "title": titles,
            "price": (10 + items * 0.25).round(2),
        }
    )


def make_user_attributes(
    num_users: int = 200, num_clusters: int = 4, seed: int = 0
) -> pd.DataFrame:
    """Attributes of :func:`make_interactions`' users (same ``seed``): ``segment`` is the cluster.

    Columns ``user_id`` and ``segment`` (categorical ``s<c>``).
    """
    user_cluster = np.random.default_rng(seed).integers(num_clusters, size=num_users)
    return pd.DataFrame(
        {
            "user_id": np.char.add("u", np.arange(num_users).astype(str)),
            "segment": np.char.add("s", user_cluster.astype(str)),
        }
    )


#: A user who interacts with more than 1 / _HEAVY_SHARE of the catalogue is drawn by Gumbel top-k.
_HEAVY_SHARE = 20


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (NumPy 2's hash-based unique was 20x slower on int64 keys)."""
    ordered = np.sort(values)
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]


def _distinct_by_gumbel(
    rng: np.random.Generator, users: np.ndarray, counts: np.ndarray, probabilities: np.ndarray
) -> np.ndarray:
    """``user * num_items + item`` keys: each user's ``counts[user]`` distinct weighted items."""
    if len(users) == 0:
        return np.empty(0, dtype=np.int64)
    num_items = len(probabilities)
    perturbed = np.log(probabilities)[None, :] - np.log(
        -np.log(rng.random((len(users), num_items)))
    )
    order = np.argsort(-perturbed, axis=1)
    keep = np.arange(num_items)[None, :] < counts[users][:, None]
    return (users[:, None].astype(np.int64) * num_items + order)[keep]


def make_power_law_interactions(
    num_users: int = 138_493,
    num_items: int = 26_744,
    num_interactions: int = 20_000_263,
    user_exponent: float = 0.4,
    item_exponent: float = 0.6,
    min_per_user: int = 20,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs shaped like MovieLens-20M, in memory O(interactions).

    User activity and item popularity both follow power laws in rank: the ``r``-th most
    active user has about ``r ** -user_exponent`` of the interactions above the floor of
    ``min_per_user`` each, and the ``r``-th most popular item is drawn with probability
    proportional to ``r ** -item_exponent``. The defaults give MovieLens-20M's counts
    (138,493 users, 26,744 items, 20,000,263 interactions) with its most active user near
    its 9,254 ratings. Users and items are drawn in a shuffled rank order, so index and
    popularity are unrelated. Each user's items are distinct (re-drawn until they are);
    no ``[users, items]`` array is ever built.

    Returns:
        ``(user_index int32, item_index int32)``, sorted by user, ``num_interactions`` long
        (fewer only if a user would need more than half the items).

    Raises:
        ValueError: The sizes cannot hold that many distinct pairs with the floor.
    """
    if num_users * min_per_user > num_interactions or min_per_user >= num_items:
        raise ValueError(
            f"{num_users} users x min_per_user {min_per_user} must fit in {num_interactions} "
            f"interactions and min_per_user must be below num_items ({num_items})"
        )
    rng = np.random.default_rng(seed)
    weights = np.arange(1, num_users + 1, dtype=np.float64) ** -user_exponent
    extra = num_interactions - num_users * min_per_user
    counts = min_per_user + np.floor(extra * weights / weights.sum()).astype(np.int64)
    counts[: num_interactions - int(counts.sum())] += 1  # the rounding remainder, to the top
    counts = np.minimum(counts, num_items // 2)  # room left for distinct draws
    counts = rng.permutation(counts)
    item_rank_to_index = rng.permutation(num_items)
    cumulative = np.cumsum(np.arange(1, num_items + 1, dtype=np.float64) ** -item_exponent)
    cumulative /= cumulative[-1]

    probabilities = np.diff(cumulative, prepend=0.0)[np.argsort(item_rank_to_index)]
    # Heavy users (a sizeable share of the catalogue) by Gumbel top-k over every item, a few
    # rows at a time; everyone else by drawing with replacement and re-drawing repeats.
    heavy = np.flatnonzero(counts * _HEAVY_SHARE > num_items)
    parts = [
        _distinct_by_gumbel(rng, heavy[s : s + 256], counts, probabilities)
        for s in range(0, len(heavy), 256)
    ]
    light = np.setdiff1d(np.arange(num_users), heavy)
    keys = np.empty(0, dtype=np.int64)
    wanted = np.zeros(num_users, dtype=np.int64)
    wanted[light] = counts[light]
    while wanted.any():
        users = np.repeat(np.arange(num_users, dtype=np.int64), wanted)
        ranks = np.searchsorted(cumulative, rng.random(len(users)), side="right")
        drawn = users * num_items + item_rank_to_index[np.minimum(ranks, num_items - 1)]
        # New draws that repeat a pair (within the round or with earlier rounds) are dropped;
        # the users they belong to draw again for what they still lack.
        fresh = _sorted_unique(drawn)
        if len(keys):
            place = np.minimum(np.searchsorted(keys, fresh), len(keys) - 1)
            fresh = fresh[keys[place] != fresh]
        keys = np.sort(np.concatenate([keys, fresh]))
        wanted[light] = counts[light] - np.bincount(keys // num_items, minlength=num_users)[light]
    parts.append(keys)
    keys = np.sort(np.concatenate(parts))
    return (keys // num_items).astype(np.int32), (keys % num_items).astype(np.int32)
