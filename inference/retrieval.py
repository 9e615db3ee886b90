"""Top-k retrieval for large catalogs: an approximate first stage, re-scored exactly.

Brute force (every item scored, ``inference.recommender``) is exact and stays the
choice while it is fast: about 3 ms for a top-10 over 100,000 items on one core,
but a 1M-item catalog is a 256 MB matrix-vector product per request (GMF d=64)
before the top-k. Past ``APPROXIMATE_FROM_ITEMS`` items (``auto``;
``ncf_contract.first_stage``) recommend requests take two stages instead:

1. **Candidates** from a FAISS inverted-file index (``IndexIVFFlat``, inner
   product) over the model's first-stage item vectors
   (``ncf_contract.first_stage.first_stage_vectors``), queried with the user's first-stage vector
   (``NcfScorer.first_stage_query``). For gmf, ials and hybrid (item bias as one more
   dimension) and for NeuMF without hidden layers the inner product *is* the logit,
   up to a per-user constant. For NeuMF with hidden layers it is the GMF part plus a
   linear stand-in for the MLP tower: the items' first-layer terms are indexed beside
   the GMF vectors, and the query carries the user's mean gradient of the tower over
   a fixed sample of items. On ``benchmarks/serve_catalog.py``'s worst case (1M items,
   an MLP tower independent of the GMF tower) 200 candidates held 53% of the exact
   top 10 with the GMF part alone and 96% with the stand-in (BENCHMARKS.md).
   The user's seen items (and the request's ``exclude_item_ids``) never come back:
   a short exclusion list by fetching that many more candidates and dropping them,
   a long one (a heavy user) inside the search (``IDSelectorNot``), so a heavy user
   still gets a full candidate list.
2. **Exact re-scoring** of those candidates by the model (``NcfScorer.logits_pairs``):
   the full score, MLP tower included, so the first stage only chooses the
   candidates; ``benchmarks/serve_catalog.py`` measures how many of the brute-force
   top 10 survive it (recall@10).

The index comes with the model: training's export builds it when ``auto`` would use it
and stores it in the model directory (``first_stage.faiss``, ``ncf_contract.model_dir``),
and ``ApproximateIndex.for_model`` reads it when it belongs to the loaded weights (its
fingerprint, ``ncf_contract.first_stage``). Otherwise (a directory exported before the
index was stored, ``approximate`` on a catalog below the threshold, a stale or unreadable
file: the log says which) it is built at load with the export's code
(``ncf_contract.first_stage.build_index``: k-means on a sample of
``TRAIN_SAMPLE_PER_LIST`` items per list, then every item assigned, with all cores). Both
give the same index. Searches run on one thread (``faiss.omp_set_num_threads(1)``: one
request per gthread thread) and look into ``NCF_ANN_NPROBE`` lists. Memory: the index
holds one float32 copy of the first-stage item vectors (``num_items x D x 4`` bytes: 256
MB at 1M x 64 for GMF, 384 MB for NeuMF with GMF 64 and a 32-wide first MLP layer) plus
its centroids. ``serve`` reads or builds it once, in the gunicorn master, and the workers
share it (``inference.server``).

MLP-only models have no dot-product part to index: they are always scored
exactly. Requests that restrict the candidates (``candidate_item_ids``) or
re-rank by popularity are scored exactly too (see ``Recommender``).

The mode is ``NCF_RETRIEVAL`` (``auto``, ``exact`` or ``approximate``), with
``NCF_ANN_CANDIDATES`` candidates re-scored per request and ``NCF_ANN_NPROBE``
inverted lists searched (``inference.settings``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncf_contract import first_stage
from ncf_contract.model_dir import ModelArtifacts

LOGGER = logging.getLogger(__name__)

RETRIEVAL_MODES = ("auto", "exact", "approximate")


@dataclass(frozen=True)
class RetrievalSettings:
    """How recommend requests find their candidates.

    Attributes:
        mode: ``auto`` (approximate from ``first_stage.APPROXIMATE_FROM_ITEMS`` items on,
            for models with a GMF part), ``exact`` (always brute force) or ``approximate``.
        candidates: Items the first stage hands to exact re-scoring (at least ``k``).
        nprobe: Inverted lists searched per query.
        known_rows_mb: Memory bound, in MB, of the table of every known user's scores that
            EASE and blend models compute once at load (``inference.scoring.known_user_rows``);
            0 scores each request's rows when it comes.
    """

    mode: str = "auto"
    candidates: int = 200
    nprobe: int = 32
    known_rows_mb: int = 256

    @property
    def known_rows_bytes(self) -> int:
        """``known_rows_mb`` in bytes."""
        return self.known_rows_mb * 1024 * 1024

    def use_approximate(self, num_items: int, has_gmf: bool) -> bool:
        """Whether a model of ``num_items`` items (with or without a GMF part) gets the index."""
        if not has_gmf or self.mode == "exact":
            return False
        return self.mode == "approximate" or num_items >= first_stage.APPROXIMATE_FROM_ITEMS


class ApproximateIndex:
    """An inner-product IVF index over item vectors, searched with exclusions.

    Made by ``for_model`` (the model directory's stored index, or one built at load) or
    ``build``.
    """

    def __init__(self, index: Any, nprobe: int) -> None:
        """Search ``index`` (a filled ``faiss.IndexIVFFlat``) in ``nprobe`` lists per query."""
        import faiss  # only models served approximately pay for the import

        self._faiss = faiss
        faiss.omp_set_num_threads(1)  # a search serves one request on one gthread thread
        self._index = index
        #: ``"stored"``: the model directory's index; ``"built"``: built in this process.
        self.origin = "built"
        self.num_lists = int(index.nlist)
        self.nprobe = min(nprobe, self.num_lists)
        index.nprobe = self.nprobe

    @classmethod
    def build(cls, item_vectors: np.ndarray, nprobe: int) -> ApproximateIndex:
        """Build the index over ``item_vectors`` (``[num_items, D]``) here and now.

        Args:
            item_vectors: The vectors the query's inner product is taken with.
            nprobe: Inverted lists searched per query.
        """
        started = time.perf_counter()
        index = cls(first_stage.build_index(item_vectors), nprobe)
        index._log(f"built in {time.perf_counter() - started:.2f} s")
        return index

    @classmethod
    def for_model(
        cls,
        artifacts: ModelArtifacts,
        item_vectors: Callable[[], np.ndarray | None],
        nprobe: int,
    ) -> ApproximateIndex | None:
        """The model directory's stored index if it is the weights' own, else one built now.

        Never fails for the stored index: when it is missing (a model exported before it
        was stored, or a catalog under ``APPROXIMATE_FROM_ITEMS``), stale or unreadable, the
        log says so and the index is built from ``item_vectors()``.

        Args:
            artifacts: The loaded model.
            item_vectors: Computes the first-stage item vectors (only called to build).
            nprobe: Inverted lists searched per query.

        Returns:
            The index, or ``None`` when the model has no first stage (``item_vectors()``
            is ``None``).
        """
        meta = artifacts.metadata
        stored = artifacts.first_stage_index
        if stored is not None:
            started = time.perf_counter()
            try:
                found = stored.read(artifacts.weights, meta.model_type, meta.num_mlp_layers)
            except first_stage.IndexFileError as error:
                LOGGER.warning(
                    "the model directory's first-stage index is not used (%s); "
                    "building it at load instead",
                    error,
                )
            else:
                index = cls(found, nprobe)
                index.origin = "stored"
                index._log(f"read from {stored.path} in {time.perf_counter() - started:.2f} s")
                return index
        elif first_stage.exports_index(meta.model_type, artifacts.num_items):
            LOGGER.warning(
                "the model directory has no %s (exported before the first-stage index was "
                "stored with the model); building the index at load: export the model again "
                "to start faster",
                first_stage.INDEX_FILE,
            )
        vectors = item_vectors()
        return None if vectors is None else cls.build(vectors, nprobe)

    def _log(self, how: str) -> None:
        LOGGER.info(
            "approximate index: %d items in %d lists, nprobe %d, %s",
            self._index.ntotal,
            self.num_lists,
            self.nprobe,
            how,
        )

    def search(self, query: np.ndarray, count: int, exclude: np.ndarray) -> np.ndarray:
        """Up to ``count`` item positions with the largest inner product with ``query``.

        Args:
            query: ``[d]`` float32.
            count: How many candidates.
            exclude: Item positions never returned (seen or excluded items).

        Returns:
            ``[<= count]`` int64 positions, best first (fewer when the searched lists
            hold fewer eligible items).
        """
        faiss = self._faiss
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if len(exclude) <= count:
            # A short exclusion list: over-fetch and drop (a FAISS selector costs about 1 ms
            # to build and check, more than searching for the extra items).
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
            _, found = self._index.search(query, count + len(exclude), params=params)
            positions: np.ndarray = found[0]
            positions = positions[(positions >= 0) & ~np.isin(positions, exclude)]
            return positions[:count]
        batch = faiss.IDSelectorBatch(np.ascontiguousarray(exclude, dtype=np.int64))
        params = faiss.SearchParametersIVF(sel=faiss.IDSelectorNot(batch), nprobe=self.nprobe)
        _, found = self._index.search(query, count, params=params)
        positions = found[0]
        return positions[positions >= 0]
