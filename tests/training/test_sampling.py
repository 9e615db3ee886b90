"""Negative sampling never draws a user's positives, and is uniform over the rest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import training.sampling as sampling
from ncf_contract.seen import SeenItems
from training.dataset import Interactions
from training.errors import DataError
from training.sampling import sample_negatives, training_examples


@pytest.fixture(params=["bitset", "bitset per call", "exact"])
def method(request, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test on every code path: rejection against a bitset kept with the seen set,
    or built per call (large tables: small draws then go by rank), and exact by rank."""
    if request.param == "exact":
        monkeypatch.setattr(sampling, "BITSET_CELLS_LIMIT", 0)
    if request.param == "bitset per call":
        monkeypatch.setattr(sampling, "KEPT_BITS_BYTES", 0)
    return request.param


def random_seen(rng: np.random.Generator, num_users: int, num_items: int, density: float):
    mask = rng.random((num_users, num_items)) < density
    mask[np.arange(num_users), rng.integers(num_items, size=num_users)] = False  # one free item
    users, items = np.nonzero(mask)
    return SeenItems.from_pairs(users, items, num_users, num_items), mask


def test_never_draws_positives_over_many_draws(method: str) -> None:
    rng = np.random.default_rng(0)
    seen, mask = random_seen(rng, 50, 40, 0.6)
    users = np.repeat(np.arange(50), 40)
    drawn = sample_negatives(users, seen, 40, 25, rng)
    assert drawn.shape == (2000, 25) and drawn.dtype == np.int32
    assert not mask[users[:, None], drawn].any()
    # Uniform over each user's unseen items: every unseen item shows up.
    for user in range(50):
        got = np.unique(drawn[users == user])
        assert got.tolist() == np.flatnonzero(~mask[user]).tolist()


def test_user_who_has_seen_all_but_one_item(method: str) -> None:
    num_items = 500
    items = np.delete(np.arange(num_items), 137)
    seen = SeenItems.from_pairs(np.zeros(len(items), dtype=np.int64), items, 2, num_items)
    drawn = sample_negatives(np.array([0, 0, 1]), seen, num_items, 64, np.random.default_rng(1))
    assert (drawn[:2] == 137).all()
    assert (drawn[2] >= 0).all() and (drawn[2] < num_items).all()


def test_user_who_has_seen_everything_fails(method: str) -> None:
    seen = SeenItems.from_pairs(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0]), 2, 3)
    with pytest.raises(DataError, match=r"1 user\(s\).*every one of the 3 items"):
        sample_negatives(np.array([1, 0]), seen, 3, 4, np.random.default_rng(0))


def test_uniformity_chi_square_like(method: str) -> None:
    rng = np.random.default_rng(5)
    seen = SeenItems.from_pairs(np.array([0, 0, 0]), np.array([2, 5, 7]), 1, 10)
    drawn = sample_negatives(np.zeros(20_000, dtype=np.int64), seen, 10, 5, rng)
    counts = np.bincount(drawn.ravel(), minlength=10)
    assert counts[[2, 5, 7]].sum() == 0
    free = counts[[0, 1, 3, 4, 6, 8, 9]]
    expected = 100_000 / 7
    assert np.all(np.abs(free - expected) < 5 * np.sqrt(expected))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 8),
    st.integers(2, 30),
    st.floats(0.0, 0.95),
    st.integers(0, 2**31),
    st.booleans(),
)
def test_property_no_positive_is_ever_drawn(
    num_users: int, num_items: int, density: float, seed: int, exact: bool
) -> None:
    rng = np.random.default_rng(seed)
    seen, mask = random_seen(rng, num_users, num_items, density)
    limit = sampling.BITSET_CELLS_LIMIT
    sampling.BITSET_CELLS_LIMIT = 0 if exact else limit
    try:
        users = rng.integers(num_users, size=64)
        drawn = sample_negatives(users, seen, num_items, 7, rng)
    finally:
        sampling.BITSET_CELLS_LIMIT = limit
    assert not mask[users[:, None], drawn].any()
    assert ((drawn >= 0) & (drawn < num_items)).all()


def test_training_examples_epoch(method: str) -> None:
    rng = np.random.default_rng(2)
    seen, mask = random_seen(rng, 30, 50, 0.2)
    users, items = seen.pairs()
    train = Interactions(users, items)
    u, i, y, w = training_examples(train, seen, 50, 4, rng)
    assert w is None
    assert len(u) == len(i) == len(y) == 5 * len(users)
    assert u.dtype == np.int32 and i.dtype == np.int32 and y.dtype == np.float32
    assert y.sum() == len(users)
    assert mask[u[y == 1], i[y == 1]].all()
    assert not mask[u[y == 0], i[y == 0]].any()
    # Each user gets num_negatives negatives per positive.
    assert np.array_equal(np.bincount(u[y == 0], minlength=30), 4 * seen.counts())
    # Grouped: each positive is followed by its 4 negatives, for the same user.
    assert (y[::5] == 1).all() and y.reshape(-1, 5)[:, 1:].sum() == 0
    assert (u.reshape(-1, 5) == u[::5, None]).all()
    # Shuffled: the groups are not in train order.
    assert not np.array_equal(u[::5], users)
    # Fresh negatives each epoch.
    _, i2, _, _ = training_examples(train, seen, 50, 4, rng)
    assert not np.array_equal(i, i2)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("num_negatives", [0, 1, 4])
def test_examples_are_groups_of_a_positive_and_its_negatives_in_a_permuted_order(
    monkeypatch: pytest.MonkeyPatch, shuffle: bool, num_negatives: int
) -> None:
    # Issue 16: each positive is followed by its own negatives (drawn for its row), the
    # groups in rng.permutation's order of the positives, written in blocks of positives.
    monkeypatch.setattr(sampling, "_ARRANGE_BLOCK", 7)
    rng = np.random.default_rng(4)
    seen, _ = random_seen(rng, 20, 40, 0.2)
    users, items = seen.pairs()
    train = Interactions(users, items)
    positive_weights = rng.random(len(users)).astype(np.float32)
    found = training_examples(
        train, seen, 40, num_negatives, np.random.default_rng(9), shuffle, positive_weights
    )
    reference_rng = np.random.default_rng(9)
    negatives = sample_negatives(users, seen, 40, num_negatives, reference_rng)
    order = reference_rng.permutation(len(users)) if shuffle else np.arange(len(users))
    group = 1 + num_negatives
    expected: list[np.ndarray] = [
        np.repeat(users[order], group),
        np.column_stack([items[order], negatives[order]]).ravel(),
        np.tile(np.r_[1.0, np.zeros(num_negatives)], len(users)),
        np.repeat(positive_weights[order], group),
    ]
    assert found[3] is not None
    assert [array.dtype for array in found[:3]] == [np.int32, np.int32, np.float32]
    assert found[3].dtype == np.float32
    for got, want in zip(found, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_drawing_by_rank_in_blocks_gives_the_same_negatives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 16: blocks bound the temporaries at 20M interactions; the draws are unchanged.
    monkeypatch.setattr(sampling, "BITSET_CELLS_LIMIT", 0)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 30, 500)
    items = np.concatenate([np.sort(rng.choice(60, c, replace=False)) for c in counts])
    seen = SeenItems.from_csr(np.concatenate([[0], np.cumsum(counts)]), items, 60)
    users = rng.integers(0, 500, 2_000)
    whole = sampling.sample_negatives(users, seen, 60, 4, np.random.default_rng(7))
    monkeypatch.setattr(sampling, "_BLOCK_ROWS", 300)
    blocked = sampling.sample_negatives(users, seen, 60, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(blocked, whole)
    assert blocked.dtype == np.int32
    assert not seen.contains(np.repeat(users, 4), blocked.ravel()).any()


def test_the_bitset_holds_exactly_the_seen_cells() -> None:
    rng = np.random.default_rng(3)
    seen, mask = random_seen(rng, 37, 29, 0.3)  # 1,073 cells: the last byte is partly used
    bits = sampling._seen_bits(seen, 29)
    assert bits.dtype == np.uint8 and len(bits) == (37 * 29 + 7) // 8
    unpacked = np.unpackbits(bits, bitorder="little")
    np.testing.assert_array_equal(unpacked[: 37 * 29].reshape(37, 29), mask)
    assert not unpacked[37 * 29 :].any()
    np.testing.assert_array_equal(sampling._is_seen(bits, np.arange(37 * 29)), mask.ravel())


def test_a_large_bitset_is_built_per_call_and_only_for_draws_the_size_of_the_seen_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(4)
    seen, _ = random_seen(rng, 40, 30, 0.3)
    kept = sampling._bits_for(seen, 30, draws=1)
    assert kept is not None and sampling._bits_for(seen, 30, draws=1) is kept  # kept
    monkeypatch.setattr(sampling, "KEPT_BITS_BYTES", 0)  # as if this table were too large
    fresh = SeenItems.from_csr(seen.indptr, seen.indices, 30)
    built = sampling._bits_for(fresh, 30, draws=fresh.nnz)
    assert built is not None and built is not sampling._bits_for(fresh, 30, draws=fresh.nnz)
    np.testing.assert_array_equal(built, kept)
    assert sampling._bits_for(fresh, 30, draws=fresh.nnz - 1) is None  # drawn by rank
    monkeypatch.setattr(sampling, "BITSET_CELLS_LIMIT", 40 * 30 - 1)
    assert sampling._bits_for(fresh, 30, draws=10**9) is None
