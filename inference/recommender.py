"""Top-k recommendations, item scores and similar items, batched over a request's instances.

Built once per worker from a model directory. Load-time precomputation, and what
each saves per request:

- ``user_index`` / ``item_index``: id -> position dicts, one hash lookup per id
  instead of a search through the vocabulary (built from the id lists with
  ``dict(zip(ids, range(n)))``; the item dict shares its strings with ``item_id_list``).
- ``seen``: the CSR of training interactions (``ncf_contract.seen``), so
  excluding a batch's seen items is one fancy-indexed write.
- ``popularity_logits``: the popularity ranking row for unknown users, scored
  by the same top-k code as model rows (no second code path).
- ``scorer``: see ``inference.scoring`` (item-side tensors, folded kernels).
- ``known_rows``: for EASE and blend models, every known user's scores when the
  table fits ``NCF_KNOWN_ROWS_MB`` (``inference.scoring.known_user_rows``): a known
  user's row is then one copy instead of a product with the items x items matrix.
- ``item_vectors_t``: the unit item vectors' transposed view (no copy; BLAS takes
  it with its transpose flag), so similar items for a batch is one
  ``[b, d] @ [d, num_items]`` product.

Top-k is ``np.argpartition`` (O(num_items)) followed by a sort of the k
winners only; ranking is done on logits and the sigmoid applied to the winners.

Re-ranking (``diversity`` and ``popularity_penalty`` of a recommend request, or
the endpoint's defaults ``NCF_DIVERSITY`` / ``NCF_POPULARITY_PENALTY``; both 0
to 1, and 0 leaves the list exactly as the plain ranking has it):

- ``popularity_penalty`` = β ranks items by ``logit - β * ln(1 + popularity)``,
  ``popularity`` being the item's training interactions. For the implicit
  (sigmoid) models that ranks by ``odds / (1 + popularity) ** β``: β = 1 divides
  each item's odds by its interaction count (full inverse-popularity weighting);
  for explicit models it subtracts ``β * ln(1 + popularity)`` from the rating.
- ``diversity`` = λ re-ranks the ``max(50, 5 k)`` best items by that key with
  maximal marginal relevance (Carbonell and Goldstein, SIGIR 1998): the best
  item first, then repeatedly the item maximising
  ``(1 - λ) * relevance - λ * max cos(item, chosen)``, where ``relevance`` is
  the key scaled to [0, 1] over those candidates and ``cos`` is measured on the
  unit item vectors of similar items. λ = 1 picks, after the first, the
  candidate least like those already chosen.
- Returned scores stay the model's scores; only the order changes. The
  popularity fallback of unknown users is not re-ranked.

A request's ``history`` (item ids) replaces what the model knows of its user,
known or not: the row is scored from the history (``logits_from_history`` of
the scorer: exact for EASE, a fold-in for gmf and ials, a 400 for mlp and
neumf), ``exclude_seen`` excludes the history's items, and the answer says
``"from": "history"``. Unknown ids in a history are ignored; a history with no
known item gets the popularity fallback.

Attributes (models trained with the ``items`` / ``users`` channels, see
``ncf_contract.attributes``):

- A user the model does not know, sent with ``user_attributes``, is scored from
  the hybrid's attribute part: ``encode(attributes) @ user_feature_embedding``
  is a user vector scored like any other; the prediction says
  ``"from": "user_attributes"``. Without attributes an unknown user gets the
  fallback (``popularity``, or ``trending``: interactions within the last
  ``trending_window`` days of training), named in ``"fallback"``.
- ``filter`` keeps the items having, for each ``include`` attribute, one of its
  values and none of the ``exclude`` values, before top-k: the items of each
  value are one index range of the items' feature matrix (CSC, built at load
  time), written into a boolean mask.
- Similar items ``by`` ``content`` rank by the cosine of the items' unit TF-IDF
  rows (``content.npz``; one sparse product per batch), ``hybrid`` by the mean
  of the content and behaviour cosines. Cold items have both.
- An unknown attribute name or value is a 400 that names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import bad_request
from inference.instances import (
    ItemFilter,
    RecommendRequest,
    Reranking,
    ScoreRequest,
    SimilarRequest,
)
from inference.retrieval import ApproximateIndex, RetrievalSettings
from inference.scoring import NcfScorer, known_user_rows, scorer_for
from ncf_contract.attributes import UnknownAttributeError
from ncf_contract.families import HISTORY_FAMILIES
from ncf_contract.model_dir import ModelArtifacts, load_model_dir
from ncf_contract.ranking import top_k_matrix

POPULARITY_FALLBACK = "popularity"
TRENDING_FALLBACK = "trending"
#: The ``"from"`` of a prediction made from the request's ``user_attributes``.
FROM_USER_ATTRIBUTES = "user_attributes"
#: ``"from"`` of an answer scored from the request's history.
FROM_HISTORY = "history"
#: Users scored per catalog matrix in ``recommend`` and ``similar``.
RECOMMEND_CHUNK = 256
#: Maximal marginal relevance re-ranks the best ``max(MMR_POOL_MIN, MMR_POOL_PER_K * k)``
#: items: wide enough to find dissimilar items, small enough to stay cheap at k = 10.
MMR_POOL_MIN = 50
MMR_POOL_PER_K = 5


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


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """The order in which maximal marginal relevance picks ``k`` of the candidates.

    Args:
        relevance: ``[c]`` finite relevance of each candidate, best first.
        vectors: ``[c, d]`` the candidates' unit vectors.
        k: How many to pick (at most ``c``).
        diversity: λ in [0, 1]: the weight of dissimilarity against relevance.

    Returns:
        ``[min(k, c)]`` candidate positions: position 0 first, then each step the
        candidate maximising ``(1 - λ) * scaled relevance - λ * max cos(candidate,
        picked)``, ties to the lower position (the more relevant candidate).
    """
    count = len(relevance)
    picks = min(k, count)
    order = np.zeros(picks, dtype=np.intp)
    if picks <= 1:
        return order
    relevance = relevance.astype(np.float32, copy=False)
    low = relevance.min()
    span = relevance.max() - low
    scaled = (relevance - low) / span if span > 0 else np.zeros(count, np.float32)
    weighted = np.float32(1.0 - diversity) * scaled
    penalised = vectors * np.float32(-diversity)  # penalised @ v = -λ cos(., v)
    # gain = weighted - λ max cos(., picks): each pick can only lower it (an elementwise
    # minimum); a picked candidate's gain is -inf. One [c, d] @ [d] product per step.
    gain = weighted + penalised @ vectors[0]
    gain[0] = -np.inf
    for step in range(1, picks):
        pick = int(np.argmax(gain))
        order[step] = pick
        np.minimum(gain, weighted + penalised @ vectors[pick], out=gain)
        gain[pick] = -np.inf
    return order


def _positions(ids: list[str]) -> dict[str, int]:
    """``{id: position}``: one C-level pass (``zip``/``range``), no Python loop body."""
    return dict(zip(ids, range(len(ids)), strict=True))


def _round(values: np.ndarray) -> list[float]:
    # float32 -> 7 significant digits are meaningful; rounding keeps the JSON short.
    return np.round(values.astype(np.float64), 6).tolist()


class Recommender:
    """What ``/invocations`` calls: one method per instance kind, each taking a batch."""

    def __init__(
        self,
        artifacts: ModelArtifacts,
        reranking: Reranking | None = None,
        retrieval: RetrievalSettings | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.reranking = reranking or Reranking()
        self.metadata = artifacts.metadata
        self.scorer = scorer_for(artifacts)
        self.retrieval = retrieval or RetrievalSettings()
        self.known_rows = known_user_rows(self.scorer, self.retrieval.known_rows_bytes)
        self.user_ids = artifacts.user_ids
        self.item_ids = artifacts.item_ids
        self.num_items = artifacts.num_items
        self.user_index = _positions(artifacts.user_ids.tolist())
        self.item_id_list: list[str] = artifacts.item_ids.tolist()
        self.item_index = _positions(self.item_id_list)
        self.seen = artifacts.seen
        self.popularity = np.asarray(artifacts.item_popularity, dtype=np.float32)
        self.item_vectors_t = self.scorer.item_vectors.T  # a view (see the module docstring)
        self.log_popularity = np.log1p(self.popularity).astype(np.float32)
        self.fallback_rows = {POPULARITY_FALLBACK: self.popularity}
        if artifacts.item_trending is not None:
            self.fallback_rows[TRENDING_FALLBACK] = artifacts.item_trending.astype(np.float32)
        self.item_attributes = artifacts.item_attributes
        self.user_attributes = artifacts.user_attributes
        features = artifacts.item_features
        self.item_features_csc = None if features is None else features.tocsc()
        self.content = artifacts.content
        self.content_t = None if artifacts.content is None else artifacts.content.T.tocsr()
        self.user_feature_embedding = artifacts.weights.get("user_feature_embedding")
        self.approximate: ApproximateIndex | None = None
        if (
            isinstance(self.scorer, NcfScorer)
            and self.scorer.has_first_stage
            and self.retrieval.use_approximate(self.num_items, True)
        ):
            # The model directory's index, or one built now (the vectors then are a
            # temporary: the index holds its own copy).
            self.approximate = ApproximateIndex.for_model(
                artifacts, self.scorer.first_stage_items, self.retrieval.nprobe
            )

    @classmethod
    def from_model_dir(
        cls,
        model_dir: Path,
        reranking: Reranking | None = None,
        retrieval: RetrievalSettings | None = None,
    ) -> Recommender:
        """Load and precompute; ``reranking`` is what requests that name none get.

        Raises:
            ArtifactError: The directory is missing, incomplete or corrupt.
        """
        return cls(load_model_dir(model_dir), reranking, retrieval)

    def _item_positions(self, item_ids: tuple[str, ...]) -> np.ndarray:
        """Positions of the known ids among ``item_ids`` (unknown ids are dropped)."""
        lookup = self.item_index.get
        return np.fromiter((p for p in map(lookup, item_ids) if p is not None), dtype=np.intp)

    def _history_logits(
        self, requests: Sequence[RecommendRequest | ScoreRequest]
    ) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
        """For each request with a history: its distinct known items and its logits row.

        The row is ``None`` when no item of the history is known (popularity fallback).

        Raises:
            InferenceError: 400 when the model's family cannot score a history.
        """
        rows = [n for n, request in enumerate(requests) if request.history is not None]
        if not rows:
            return {}
        if self.metadata.model_type not in HISTORY_FAMILIES:
            raise bad_request(
                f"history needs a model of type {', '.join(HISTORY_FAMILIES)}; "
                f"this endpoint serves a {self.metadata.model_type} model"
            )
        histories = {n: np.unique(self._item_positions(requests[n].history or ())) for n in rows}
        scored = [n for n in rows if len(histories[n])]
        logits = (
            list(self.scorer.logits_from_history([histories[n] for n in scored])) if scored else []
        )
        found: dict[int, tuple[np.ndarray, np.ndarray | None]] = {
            n: (histories[n], None) for n in rows
        }
        found.update({n: (histories[n], row) for n, row in zip(scored, logits, strict=True)})
        return found

    def recommend(
        self, requests: list[RecommendRequest], labels: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Top-k for each request; unknown users are served from their attributes or a fallback.

        ``labels[n]`` names request ``n`` in error messages.

        Raises:
            InferenceError: 400 naming an unknown attribute name or value, or a
                feature the model lacks (filters, user attributes, trending).

        Large batches (batch transform) go in chunks of ``RECOMMEND_CHUNK`` users, so the
        ``[users, num_items]`` score matrix stays small (256 x 3,706 floats = 3.8 MB).
        """
        labels = labels or [f"instances[{n}]" for n in range(len(requests))]
        if len(requests) > RECOMMEND_CHUNK:
            return [
                prediction
                for start in range(0, len(requests), RECOMMEND_CHUNK)
                for prediction in self._recommend(
                    requests[start : start + RECOMMEND_CHUNK],
                    labels[start : start + RECOMMEND_CHUNK],
                )
            ]
        return self._recommend(requests, labels)

    def _recommend(
        self, requests: list[RecommendRequest], labels: list[str]
    ) -> list[dict[str, Any]]:
        if self.approximate is None:
            return self._recommend_exact(requests, labels)
        done: dict[int, dict[str, Any]] = {}
        for n, request in enumerate(requests):
            if (prediction := self._recommend_approximately(request)) is not None:
                done[n] = prediction
        rest = [n for n in range(len(requests)) if n not in done]
        if rest:
            exact = self._recommend_exact([requests[n] for n in rest], [labels[n] for n in rest])
            done.update(zip(rest, exact, strict=True))
        return [done[n] for n in range(len(requests))]

    def _recommend_approximately(self, request: RecommendRequest) -> dict[str, Any] | None:
        """Top-k from the approximate index re-scored exactly (``inference.retrieval``).

        ``None`` when the request needs the exact path: not a known user by id, candidates,
        a filter or re-ranking by popularity or diversity, or fewer than ``k`` candidates found.
        """
        user = self.user_index.get(request.user_id or "")
        defaults = self.reranking
        if (
            self.approximate is None
            or user is None
            or request.history is not None
            or request.candidate_item_ids is not None
            or request.filter is not None
            or (defaults.diversity if request.diversity is None else request.diversity)
            or (
                defaults.popularity_penalty
                if request.popularity_penalty is None
                else request.popularity_penalty
            )
        ):
            return None
        exclude = self.seen.row(user) if request.exclude_seen else np.empty(0, np.intp)
        if request.exclude_item_ids:
            exclude = np.concatenate([exclude, self._item_positions(request.exclude_item_ids)])
        count = max(self.retrieval.candidates, request.k)
        assert isinstance(self.scorer, NcfScorer)  # the index is only built for NCF scorers
        candidates = self.approximate.search(self.scorer.first_stage_query(user), count, exclude)
        if len(candidates) < min(request.k, self.num_items - len(np.unique(exclude))):
            return None
        logits = self.scorer.logits_pairs(np.full(len(candidates), user), candidates)
        positions, values = _top_k_row(logits, request.k)
        return {
            "user_id": request.user_id,
            "items": [
                {"item_id": self.item_id_list[p], "score": s}
                for p, s in zip(
                    candidates[positions].tolist(),
                    _round(self.scorer.activate(values)),
                    strict=True,
                )
            ],
        }

    def _recommend_exact(
        self, requests: list[RecommendRequest], labels: list[str]
    ) -> list[dict[str, Any]]:
        batch = len(requests)
        lookup = self.user_index.get
        histories = self._history_logits(requests)
        users = np.array(
            [
                -1 if request.history is not None else lookup(request.user_id or "", -1)
                for request in requests
            ],
            dtype=np.intp,
        )
        known = users >= 0
        matrix = np.empty((batch, self.num_items), dtype=np.float32)
        if known.any():
            matrix[known] = self._known_logits(users[known])
        from_history = np.zeros(batch, dtype=bool)
        for row, (history, logits) in histories.items():
            if logits is not None:
                matrix[row] = logits
                from_history[row] = True
                if requests[row].exclude_seen:
                    matrix[row, history] = -np.inf
        has_attributes = np.array([r.user_attributes is not None for r in requests])
        from_attributes = ~known & ~from_history & has_attributes
        modelled = known | from_history | from_attributes
        if from_attributes.any():
            rows = np.flatnonzero(from_attributes)
            matrix[rows] = self._attribute_logits(
                [requests[r] for r in rows], [labels[r] for r in rows]
            )
        fallbacks = {}
        for row in np.flatnonzero(~modelled).tolist():
            fallbacks[row] = requests[row].fallback or self.reranking.fallback
            matrix[row] = self._fallback_row(fallbacks[row], labels[row])

        exclude_seen = known & np.array([request.exclude_seen for request in requests], dtype=bool)
        if batch == 1 and exclude_seen[0]:  # one user: a slice of the CSR, no index arithmetic
            matrix[0, self.seen.row(int(users[0]))] = -np.inf
        elif exclude_seen.any():
            rows, columns = self.seen.cells(np.flatnonzero(exclude_seen), users[exclude_seen])
            matrix[rows, columns] = -np.inf
        self._restrict(matrix, requests, labels)

        ks = np.array([request.k for request in requests], dtype=np.intp)
        predictions = []
        for row, (positions, values) in enumerate(self._rank(requests, matrix, ks, modelled)):
            scores = self.scorer.activate(values) if modelled[row] else values
            prediction: dict[str, Any] = {
                "user_id": requests[row].user_id,
                "items": [
                    {"item_id": self.item_id_list[p], "score": s}
                    for p, s in zip(positions.tolist(), _round(scores), strict=True)
                ],
            }
            if requests[row].history is not None:
                prediction["from"] = FROM_HISTORY
            if from_attributes[row]:
                prediction["from"] = FROM_USER_ATTRIBUTES
            elif not modelled[row]:
                prediction["fallback"] = fallbacks[row]
            predictions.append(prediction)
        return predictions

    def _known_logits(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]`` logits of known users (the table's rows if there is one)."""
        if self.known_rows is not None:
            return self.known_rows[users]
        return self.scorer.logits_all_items(users)

    def _restrict(
        self, matrix: np.ndarray, requests: list[RecommendRequest], labels: list[str]
    ) -> None:
        """Each row's candidates, excluded items and filter: ``-inf`` where an item may not go."""
        for row, request in enumerate(requests):
            if request.candidate_item_ids is not None:
                keep = self._item_positions(request.candidate_item_ids)
                values = matrix[row, keep]
                matrix[row] = -np.inf
                matrix[row, keep] = values
            if request.exclude_item_ids:
                matrix[row, self._item_positions(request.exclude_item_ids)] = -np.inf
            if request.filter is not None:
                matrix[row, ~self._filter_mask(request.filter, labels[row])] = -np.inf

    def _attribute_logits(self, requests: list[RecommendRequest], labels: list[str]) -> np.ndarray:
        """``[b, num_items]`` logits of users given by ``user_attributes`` (see the module)."""
        vectors = []
        for request, label in zip(requests, labels, strict=True):
            where = f"{label}.user_attributes"
            if (
                self.user_attributes is None
                or self.user_feature_embedding is None
                or not isinstance(self.scorer, NcfScorer)
            ):
                raise bad_request(
                    f"{where}: this model cannot use user attributes (train model_type=hybrid "
                    "with a users channel)"
                )
            assert request.user_attributes is not None
            try:
                indices, weights = self.user_attributes.encode(dict(request.user_attributes), where)
            except UnknownAttributeError as error:
                raise bad_request(str(error)) from None
            vectors.append(weights @ self.user_feature_embedding[indices])
        assert isinstance(self.scorer, NcfScorer)
        return self.scorer.logits_from_user_vectors(np.stack(vectors))

    def _fallback_row(self, name: str, label: str) -> np.ndarray:
        row = self.fallback_rows.get(name)
        if row is None:
            raise bad_request(
                f"{label}.fallback: this model has no {name!r} ranking (set trending_window "
                "when training, on data with timestamps)"
            )
        return row

    def _items_having(self, features: list[int]) -> np.ndarray:
        """``[num_items]`` bool: the items with any of ``features`` (CSC index ranges, no copy)."""
        assert self.item_features_csc is not None
        indptr, indices = self.item_features_csc.indptr, self.item_features_csc.indices
        has = np.zeros(self.num_items, dtype=bool)
        for feature in features:
            has[indices[indptr[feature] : indptr[feature + 1]]] = True
        return has

    def _filter_mask(self, item_filter: ItemFilter, label: str) -> np.ndarray:
        """``[num_items]`` bool: the items ``item_filter`` keeps."""
        where = f"{label}.filter"
        if self.item_attributes is None or self.item_features_csc is None:
            raise bad_request(
                f"{where}: this model has no item attributes (train it with an items channel)"
            )
        keep = np.ones(self.num_items, dtype=bool)
        try:
            for part, wanted in (("include", True), ("exclude", False)):
                for name, values in getattr(item_filter, part):
                    features = self.item_attributes.value_features(
                        name, list(values), f"{where}.{part}"
                    )
                    has = self._items_having(features)
                    keep &= has if wanted else ~has
        except UnknownAttributeError as error:
            raise bad_request(str(error)) from None
        return keep

    def _rank(
        self,
        requests: list[RecommendRequest],
        matrix: np.ndarray,
        ks: np.ndarray,
        known: np.ndarray,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row, the chosen positions and their (unpenalised) values, in list order."""
        defaults = self.reranking
        diversity = np.array(
            [defaults.diversity if r.diversity is None else r.diversity for r in requests]
        )
        penalty = np.array(
            [
                defaults.popularity_penalty
                if r.popularity_penalty is None
                else r.popularity_penalty
                for r in requests
            ]
        )
        rerank = known & ((diversity > 0) | (penalty > 0))
        if not rerank.any():
            return top_k(matrix, ks)
        plain = np.flatnonzero(~rerank)
        ranked = dict(zip(plain.tolist(), top_k(matrix[plain], ks[plain]), strict=True))
        for row in np.flatnonzero(rerank).tolist():
            ranked[row] = self._rerank(matrix[row], int(ks[row]), diversity[row], penalty[row])
        return [ranked[row] for row in range(len(requests))]

    def _rerank(
        self, logits: np.ndarray, k: int, diversity: float, popularity_penalty: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """One row's list under a popularity penalty and / or MMR (see the module docstring)."""
        key = logits
        if popularity_penalty > 0:
            key = logits - np.float32(popularity_penalty) * self.log_popularity
        if diversity > 0:
            pool, pool_keys = _top_k_row(key, max(MMR_POOL_MIN, MMR_POOL_PER_K * k))
            order = mmr_order(pool_keys, self.scorer.item_vectors[pool], k, diversity)
            positions = pool[order]
        else:
            positions, _ = _top_k_row(key, k)
        return positions, logits[positions]

    def score(self, requests: list[ScoreRequest]) -> list[dict[str, Any]]:
        """Scores aligned with each request's ``item_ids``; ``null`` for unknown items.

        An unknown user (or a history with no known item) gets each item's training
        popularity (interaction count) and ``"fallback": "popularity"``. Requests go in
        chunks of ``RECOMMEND_CHUNK``, which bounds the catalog rows of histories.
        """
        return [
            prediction
            for start in range(0, len(requests), RECOMMEND_CHUNK)
            for prediction in self._score(requests[start : start + RECOMMEND_CHUNK])
        ]

    def _score(self, requests: list[ScoreRequest]) -> list[dict[str, Any]]:
        lookup = self.item_index.get
        histories = self._history_logits(requests)
        pair_users, pair_items, owners = [], [], []
        item_positions = []
        for n, request in enumerate(requests):
            positions = [lookup(item_id) for item_id in request.item_ids]
            item_positions.append(positions)
            user = (
                None if request.history is not None else self.user_index.get(request.user_id or "")
            )
            if user is None:
                continue
            known_items = [p for p in positions if p is not None]
            pair_users.extend([user] * len(known_items))
            pair_items.extend(known_items)
            owners.extend([n] * len(known_items))
        pair_users_array = np.array(pair_users, np.intp)
        pair_items_array = np.array(pair_items, np.intp)
        model_scores = _round(
            self.scorer.score_pairs(pair_users_array, pair_items_array)
            if self.known_rows is None
            else self.scorer.activate(self.known_rows[pair_users_array, pair_items_array])
        )
        cursor = 0
        predictions = []
        for n, (request, positions) in enumerate(zip(requests, item_positions, strict=True)):
            prediction: dict[str, Any] = {"user_id": request.user_id}
            history_logits = histories[n][1] if n in histories else None
            if n in histories:
                prediction["from"] = FROM_HISTORY
            scores: list[float | None] = []
            if history_logits is not None:
                known_items = [p for p in positions if p is not None]
                found = iter(_round(self.scorer.activate(history_logits[known_items])))
                scores = [None if p is None else next(found) for p in positions]
            elif n not in histories and request.user_id in self.user_index:
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
            if request.by != "behaviour" and self.content is None:
                raise bad_request(
                    f"{label}.by {request.by!r} needs item attributes; this model was trained "
                    "without an items channel (use by=behaviour)"
                )
            positions.append(position)
        queries = np.array(positions, dtype=np.intp)
        similarity = self.scorer.item_vectors[queries] @ self.item_vectors_t
        by_content = np.array([request.by != "behaviour" for request in requests])
        if by_content.any():
            assert self.content is not None and self.content_t is not None
            rows = np.flatnonzero(by_content)
            content = (self.content[queries[rows]] @ self.content_t).toarray()
            blend = np.array([requests[r].by == "hybrid" for r in rows])[:, None]
            similarity[rows] = np.where(blend, 0.5 * (similarity[rows] + content), content)
        similarity[np.arange(len(queries)), queries] = -np.inf
        for row, (request, label) in enumerate(zip(requests, labels, strict=True)):
            if request.filter is not None:
                similarity[row, ~self._filter_mask(request.filter, label)] = -np.inf
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
