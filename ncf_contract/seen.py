"""Each user's seen items: one CSR matrix (``scipy.sparse.csr_array``) shared by both halves.

Row ``u`` holds the sorted, distinct item indices user ``u`` interacted with.
Training draws negatives outside these rows and excludes them in full-ranking
evaluation; serving excludes them from recommendations. The model directory
stores the matrix's ``indptr`` and ``indices`` (see ``ncf_contract.model_dir``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp


class SeenItems:
    """A users x items boolean CSR matrix with sorted, distinct column indices per row."""

    def __init__(self, matrix: sp.csr_array) -> None:
        """Wrap a canonical CSR matrix (use the constructors below)."""
        self.matrix = matrix
        self._memo: dict[Any, Any] = {}
        self._keys: np.ndarray | None = None

    @classmethod
    def from_pairs(
        cls, user_index: np.ndarray, item_index: np.ndarray, num_users: int, num_items: int
    ) -> SeenItems:
        """Build from (user, item) index pairs; duplicates collapse.

        Raises:
            ValueError: An index is negative or not below ``num_users`` / ``num_items``.
        """
        users = np.asarray(user_index, dtype=np.int64).reshape(-1)
        items = np.asarray(item_index, dtype=np.int64).reshape(-1)
        _check_range(users, num_users, "user")
        _check_range(items, num_items, "item")
        matrix = sp.csr_array(
            (np.ones(len(users), dtype=bool), (users, items)), shape=(num_users, num_items)
        )
        matrix.sum_duplicates()  # also sorts the indices of each row
        return cls(_canonical(matrix))

    @classmethod
    def from_csr(cls, indptr: np.ndarray, indices: np.ndarray, num_items: int) -> SeenItems:
        """Build from stored CSR arrays, checking them (a model file may be damaged).

        Raises:
            ValueError: ``indptr`` does not start at 0, decreases or does not end at
                ``len(indices)``; or an index lies outside ``[0, num_items)``.
        """
        indptr = np.asarray(indptr, dtype=np.int64).reshape(-1)
        indices = np.asarray(indices).reshape(-1)
        if len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(indices):
            raise ValueError(
                f"indptr must start at 0 and end at len(indices) = {len(indices)}; "
                f"got {len(indptr)} entries"
                + (f" from {int(indptr[0])} to {int(indptr[-1])}" if len(indptr) else "")
            )
        if np.any(np.diff(indptr) < 0):
            raise ValueError("indptr decreases")
        _check_range(indices, num_items, "item")
        matrix = sp.csr_array(
            (np.ones(len(indices), dtype=bool), indices.astype(np.int32), indptr),
            shape=(len(indptr) - 1, num_items),
        )
        matrix.sum_duplicates()
        return cls(_canonical(matrix))

    @property
    def indptr(self) -> np.ndarray:
        """``[num_users + 1]`` int64 row pointers."""
        return self.matrix.indptr

    @property
    def indices(self) -> np.ndarray:
        """``[nnz]`` int32 item indices, sorted within each row."""
        return self.matrix.indices

    @property
    def num_users(self) -> int:
        """Rows (users)."""
        return int(self.matrix.shape[0])

    @property
    def num_items(self) -> int:
        """Columns (items)."""
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        """Stored (user, item) pairs."""
        return int(self.matrix.nnz)

    def counts(self) -> np.ndarray:
        """``[num_users]`` int64 items per user."""
        return np.diff(self.indptr)

    def row(self, user: int) -> np.ndarray:
        """The sorted item indices of ``user``."""
        return self.indices[self.indptr[user] : self.indptr[user + 1]]

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(users int32, items int32)`` of every stored pair, user-major."""
        users = np.repeat(np.arange(self.num_users, dtype=np.int32), self.counts())
        return users, self.indices

    def cells(self, rows: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates ``(row, item)`` of the seen items of ``users[j]``, placed in ``rows[j]``.

        For masking a ``[len(rows), num_items]`` score matrix in one fancy-indexed write.
        """
        users = np.asarray(users, dtype=np.int64)
        starts, stops = self.indptr[users], self.indptr[users + 1]
        counts = stops - starts
        total = int(counts.sum())
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.repeat(rows, counts), self.indices[np.repeat(starts, counts) + offsets]

    def contains(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """``bool``: whether each (user, item) pair is stored (broadcasts)."""
        users, items = np.broadcast_arrays(
            np.asarray(user_index, dtype=np.int64), np.asarray(item_index, dtype=np.int64)
        )
        keys = self._sorted_keys()
        query = (users << 32) | items
        if len(keys) == 0:
            return np.zeros(query.shape, dtype=bool)
        position = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return keys[position] == query

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key`` for this matrix (derived lookup tables)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _sorted_keys(self) -> np.ndarray:
        # Globally sorted (user << 32 | item): one searchsorted answers membership.
        if self._keys is None:
            users, items = self.pairs()
            self._keys = (users.astype(np.int64) << 32) | items.astype(np.int64)
        return self._keys


def _canonical(matrix: sp.csr_array) -> sp.csr_array:
    matrix.indptr = matrix.indptr.astype(np.int64, copy=False)
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    return matrix


def _check_range(values: np.ndarray, limit: int, what: str) -> None:
    if len(values) and (values.min() < 0 or values.max() >= limit):
        raise ValueError(
            f"{what} indices must lie in [0, {limit}); got [{int(values.min())}, "
            f"{int(values.max())}]"
        )
