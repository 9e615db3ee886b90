"""The power-law generator behind the scale benchmarks: distinct pairs, the sizes asked for."""

from __future__ import annotations

import numpy as np
import pytest

from training.synthetic import make_power_law_interactions


def test_distinct_pairs_of_the_requested_size_with_a_power_law_head() -> None:
    users, items = make_power_law_interactions(
        num_users=500, num_items=2000, num_interactions=30_000, min_per_user=10, seed=1
    )
    assert len(users) == len(items) == 30_000
    assert users.dtype == items.dtype == np.int32
    keys = users.astype(np.int64) * 2000 + items
    assert len(np.unique(keys)) == len(keys)  # every (user, item) once
    assert (np.diff(users) >= 0).all()
    per_user = np.bincount(users, minlength=500)
    assert per_user.min() >= 10
    assert per_user.max() > 5 * np.median(per_user)  # heavy users (some drawn by Gumbel top-k)
    popularity = np.sort(np.bincount(items, minlength=2000))[::-1]
    assert popularity[0] > 10 * popularity[len(popularity) // 2]
    again = make_power_law_interactions(
        num_users=500, num_items=2000, num_interactions=30_000, min_per_user=10, seed=1
    )
    assert np.array_equal(again[1], items)


def test_impossible_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="min_per_user"):
        make_power_law_interactions(num_users=100, num_items=50, num_interactions=500)
