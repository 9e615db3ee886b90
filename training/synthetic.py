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
