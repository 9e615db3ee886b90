"""Top-k recommendations, item scores and similar items, batched over a request's instances.

Built once per worker from a model directory. Load-time precomputation, and what
each saves per request:

- ``user_index`` / ``item_index``: id -> position dicts, one hash lookup per id
  instead of a search through the vocabulary.
- ``seen``: the CSR of training interactions (``ncf_contract.seen``), so
  excluding a batch's seen items is one fancy-indexed write.
- ``popularity_logits``: the popularity ranking row for unknown users, scored
  by the same top-k code as model rows (no second code path).
- ``scorer``: see ``inference.scoring`` (item-side tensors, folded kernels).
- ``item_vectors_t``: unit item vectors, transposed and contiguous, so similar
  items for a batch is one ``[b, d] @ [d, num_items]`` product.

Top-k is ``np.argpartition`` (O(num_items)) followed by a sort of the k
winners only; ranking is done on logits and the sigmoid applied to the winners.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import bad_request
from inference.instances import RecommendRequest, ScoreRequest, SimilarRequest
from inference.scoring import NcfScorer
from ncf_contract.model_dir import ModelArtifacts, load_model_dir
from ncf_contract.ranking import top_k_matrix

POPULARITY_FALLBACK = "popularity"
#: Users scored per catalog matrix in ``recommend`` and ``similar``.
RECOMMEND_CHUNK = 256


def top_k(matrix: np.ndarray, ks: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row, the positions and values of the ``ks[row]`` largest finite entries, best first.

    ``-inf`` marks excluded entries; a row has fewer than ``k`` results when fewer are left.
    Ties keep the lower position first.
    """
    rows, columns = matrix.shape
    if rows == 0 or columns == 0:
        return [(np.empty(0, np.intp), np.empty(0, matrix.dtype)) for _ in range(rows)]
    if rows == 1:  # the common request: plain 1-D calls, no take_along_axis machinery
        return [_top_k_row(matrix[0], int(ks[0]))]
    best, best_values = top_k_matrix(matrix, int(ks.max()))
    results = []
    for row in range(rows):
        k = int(ks[row])
        positions, scores = best[row, :k], best_values[row, :k]
        keep = np.isfinite(scores)
        results.append((positions[keep], scores[keep]))
    return results


def _top_k_row(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    columns = len(row)
    k = min(k, columns)
    if k < columns:
        candidates = np.argpartition(row, columns - k)[columns - k :]
    else:
        candidates = np.arange(columns)
    values = row[candidates]
    order = np.lexsort((candidates, -values))
    positions, scores = candidates[order], values[order]
    if not np.isfinite(scores[-1]):
        keep = np.isfinite(scores)
        positions, scores = positions[keep], scores[keep]
    return positions, scores


def _round(values: np.ndarray) -> list[float]:
    # float32 -> 7 significant digits are meaningful; rounding keeps the JSON short.
    return np.round(values.astype(np.float64), 6).tolist()


class Recommender:
    """What ``/invocations`` calls: one method per instance kind, each taking a batch."""

    def __init__(self, artifacts: ModelArtifacts) -> None:
        self.artifacts = artifacts
        self.metadata = artifacts.metadata
        self.scorer = NcfScorer.from_artifacts(artifacts)
        self.user_ids = artifacts.user_ids
        self.item_ids = artifacts.item_ids
        self.num_items = artifacts.num_items
        self.user_index = {user_id: n for n, user_id in enumerate(artifacts.user_ids.tolist())}
        self.item_index = {item_id: n for n, item_id in enumerate(artifacts.item_ids.tolist())}
        self.item_id_list: list[str] = artifacts.item_ids.tolist()
        self.seen = artifacts.seen
        self.popularity = np.asarray(artifacts.item_popularity, dtype=np.float32)
        self.item_vectors_t = np.ascontiguousarray(self.scorer.item_vectors.T)

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> Recommender:
        """Load and precompute.

        Raises:
            ArtifactError: The directory is missing, incomplete or corrupt.
        """
        return cls(load_model_dir(model_dir))

    def _item_positions(self, item_ids: tuple[str, ...]) -> np.ndarray:
        """Positions of the known ids among ``item_ids`` (unknown ids are dropped)."""
        lookup = self.item_index.get
        return np.fromiter((p for p in map(lookup, item_ids) if p is not None), dtype=np.intp)

    def recommend(self, requests: list[RecommendRequest]) -> list[dict[str, Any]]:
        """Top-k for each request; unknown users get the most popular items.

        Large batches (batch transform) go in chunks of ``RECOMMEND_CHUNK`` users, so the
        ``[users, num_items]`` score matrix stays small (256 x 3,706 floats = 3.8 MB).
        """
        if len(requests) > RECOMMEND_CHUNK:
            return [
                prediction
                for start in range(0, len(requests), RECOMMEND_CHUNK)
                for prediction in self._recommend(requests[start : start + RECOMMEND_CHUNK])
            ]
        return self._recommend(requests)

    def _recommend(self, requests: list[RecommendRequest]) -> list[dict[str, Any]]:
        batch = len(requests)
        lookup = self.user_index.get
        users = np.array([lookup(request.user_id, -1) for request in requests], dtype=np.intp)
        known = users >= 0
        matrix = np.empty((batch, self.num_items), dtype=np.float32)
        if known.any():
            matrix[known] = self.scorer.logits_all_items(users[known])
        matrix[~known] = self.popularity

        exclude_seen = known & np.array([request.exclude_seen for request in requests], dtype=bool)
        if batch == 1 and exclude_seen[0]:  # one user: a slice of the CSR, no index arithmetic
            matrix[0, self.seen.row(int(users[0]))] = -np.inf
        elif exclude_seen.any():
            rows, columns = self.seen.cells(np.flatnonzero(exclude_seen), users[exclude_seen])
            matrix[rows, columns] = -np.inf
        for row, request in enumerate(requests):
            if request.candidate_item_ids is not None:
                keep = self._item_positions(request.candidate_item_ids)
                values = matrix[row, keep]
                matrix[row] = -np.inf
                matrix[row, keep] = values
            if request.exclude_item_ids:
                matrix[row, self._item_positions(request.exclude_item_ids)] = -np.inf

        ks = np.array([request.k for request in requests], dtype=np.intp)
        predictions = []
        for row, (positions, values) in enumerate(top_k(matrix, ks)):
            scores = self.scorer.activate(values) if known[row] else values
            prediction: dict[str, Any] = {
                "user_id": requests[row].user_id,
                "items": [
                    {"item_id": self.item_id_list[p], "score": s}
                    for p, s in zip(positions.tolist(), _round(scores), strict=True)
                ],
            }
            if not known[row]:
                prediction["fallback"] = POPULARITY_FALLBACK
            predictions.append(prediction)
        return predictions

    def score(self, requests: list[ScoreRequest]) -> list[dict[str, Any]]:
        """Scores aligned with each request's ``item_ids``; ``null`` for unknown items.

        An unknown user gets each item's training popularity (interaction count)
        and ``"fallback": "popularity"``.
        """
        lookup = self.item_index.get
        pair_users, pair_items, owners = [], [], []
        item_positions = []
        for n, request in enumerate(requests):
            positions = [lookup(item_id) for item_id in request.item_ids]
            item_positions.append(positions)
            user = self.user_index.get(request.user_id)
            if user is None:
                continue
            known_items = [p for p in positions if p is not None]
            pair_users.extend([user] * len(known_items))
            pair_items.extend(known_items)
            owners.extend([n] * len(known_items))
        model_scores = _round(
            self.scorer.score_pairs(np.array(pair_users, np.intp), np.array(pair_items, np.intp))
        )
        cursor = 0
        predictions = []
        for request, positions in zip(requests, item_positions, strict=True):
            prediction: dict[str, Any] = {"user_id": request.user_id}
            if request.user_id in self.user_index:
                scores: list[float | None] = []
                for position in positions:
                    if position is None:
                        scores.append(None)
                    else:
                        scores.append(model_scores[cursor])
                        cursor += 1
            else:
                scores = [None if p is None else float(self.popularity[p]) for p in positions]
                prediction["fallback"] = POPULARITY_FALLBACK
            prediction["scores"] = scores
            predictions.append(prediction)
        return predictions

    def similar(self, requests: list[SimilarRequest], labels: list[str]) -> list[dict[str, Any]]:
        """The ``k`` items with the highest cosine similarity to each ``item_id`` (itself excluded).

        Raises:
            InferenceError: 400 naming an ``item_id`` the model does not know.
        """
        return [
            prediction
            for start in range(0, len(requests), RECOMMEND_CHUNK)
            for prediction in self._similar(
                requests[start : start + RECOMMEND_CHUNK], labels[start : start + RECOMMEND_CHUNK]
            )
        ]

    def _similar(self, requests: list[SimilarRequest], labels: list[str]) -> list[dict[str, Any]]:
        positions = []
        for request, label in zip(requests, labels, strict=True):
            position = self.item_index.get(request.item_id)
            if position is None:
                raise bad_request(f"{label}.item_id {request.item_id!r} is not known to the model")
            positions.append(position)
        queries = np.array(positions, dtype=np.intp)
        similarity = self.scorer.item_vectors[queries] @ self.item_vectors_t
        similarity[np.arange(len(queries)), queries] = -np.inf
        ks = np.fromiter((request.k for request in requests), np.intp, len(requests))
        return [
            {
                "item_id": request.item_id,
                "items": [
                    {"item_id": self.item_id_list[p], "score": s}
                    for p, s in zip(found.tolist(), _round(values), strict=True)
                ],
            }
            for request, (found, values) in zip(requests, top_k(similarity, ks), strict=True)
        ]
