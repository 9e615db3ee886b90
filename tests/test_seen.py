"""The seen-items CSR matrix shared by training and serving (``ncf_contract.seen``)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncf_contract.seen import SeenItems


def test_seen_items_from_pairs_and_contains() -> None:
    seen = SeenItems.from_pairs(np.array([2, 0, 0, 2, 0]), np.array([5, 3, 1, 5, 3]), 4, 6)
    assert seen.indptr.tolist() == [0, 2, 2, 3, 3]
    assert seen.row(0).tolist() == [1, 3]
    assert seen.row(1).tolist() == []
    assert seen.row(2).tolist() == [5]
    assert seen.contains(np.array([0, 0, 2, 3, 1]), np.array([1, 2, 5, 5, 3])).tolist() == [
        True,
        False,
        True,
        False,
        False,
    ]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 9)), min_size=0, max_size=60))
def test_seen_items_matches_a_set(pairs: list[tuple[int, int]]) -> None:
    users = np.array([p[0] for p in pairs], dtype=np.int64)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    seen = SeenItems.from_pairs(users, items, 7, 10)
    expected = set(pairs)
    grid_u, grid_i = np.meshgrid(np.arange(7), np.arange(10), indexing="ij")
    got = seen.contains(grid_u.ravel(), grid_i.ravel())
    assert {
        (int(u), int(i)) for u, i, g in zip(grid_u.ravel(), grid_i.ravel(), got, strict=True) if g
    } == expected
    for user in range(7):
        row = seen.row(user)
        assert row.tolist() == sorted({i for u, i in pairs if u == user})


def test_seen_items_cells_place_each_users_row() -> None:
    seen = SeenItems.from_pairs(np.array([0, 0, 2]), np.array([1, 3, 4]), 3, 5)
    rows, items = seen.cells(np.array([7, 8, 9]), np.array([2, 1, 0]))
    assert list(zip(rows.tolist(), items.tolist(), strict=True)) == [(7, 4), (9, 1), (9, 3)]


@pytest.mark.parametrize(
    ("indptr", "indices", "message"),
    [
        ([0, 2, 1, 2], [0, 1], "decreases"),
        ([0, 1, 3], [0, 1], "end at len"),
        ([1, 2], [0, 1], "start at 0"),
        ([0, 2], [0, 9], r"item indices must lie in \[0, 5\)"),
        ([0, 2], [-1, 2], r"item indices must lie in \[0, 5\)"),
    ],
)
def test_stored_csr_is_checked(indptr: list[int], indices: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SeenItems.from_csr(np.array(indptr), np.array(indices), 5)


def test_from_pairs_rejects_out_of_range_indices() -> None:
    with pytest.raises(ValueError, match="user indices"):
        SeenItems.from_pairs(np.array([3]), np.array([0]), 3, 5)
