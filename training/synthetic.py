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
