"""Top-k retrieval for large catalogs: an approximate first stage, re-scored exactly.

Brute force (every item scored, ``inference.recommender``) is exact and stays the
choice while it is fast: about 3 ms for a top-10 over 100,000 items on one core,
but a 1M-item catalog is a 256 MB matrix-vector product per request (GMF d=64)
before the top-k. Past ``APPROXIMATE_FROM_ITEMS`` items (``auto``) recommend
requests take two stages instead:

1. **Candidates** from a FAISS inverted-file index (``IndexIVFFlat``, inner
   product) over the model's first-stage item vectors
   (``NcfScorer.first_stage_items``), queried with the user's first-stage vector
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

The index is built when the model is loaded (k-means on a sample of
``TRAIN_SAMPLE_PER_LIST`` items per list, then every item assigned), with all
cores; searches run on one thread (``faiss.omp_set_num_threads(1)``: one request
per gthread thread). Memory: the index holds one float32 copy of the first-stage item
vectors (``num_items x D x 4`` bytes: 256 MB at 1M x 64 for GMF, 384 MB for NeuMF
with GMF 64 and a 32-wide first MLP layer) plus its centroids. ``serve`` builds it once,
in the gunicorn master, and the workers share it (``inference.server``).

MLP-only models have no dot-product part to index: they are always scored
exactly. Requests that restrict the candidates (``candidate_item_ids``) or
re-rank by popularity are scored exactly too (see ``Recommender``).

The mode is ``NCF_RETRIEVAL`` (``auto``, ``exact`` or ``approximate``), with
``NCF_ANN_CANDIDATES`` candidates re-scored per request and ``NCF_ANN_NPROBE``
inverted lists searched (``inference.settings``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np

LOGGER = logging.getLogger(__name__)

RETRIEVAL_MODES = ("auto", "exact", "approximate")
#: ``auto`` builds the approximate index from this many items on.
APPROXIMATE_FROM_ITEMS = 200_000
#: Items per inverted list in the k-means training sample (FAISS warns below 39).
TRAIN_SAMPLE_PER_LIST = 40


@dataclass(frozen=True)
class RetrievalSettings:
    """How recommend requests find their candidates.

    Attributes:
        mode: ``auto`` (approximate from ``APPROXIMATE_FROM_ITEMS`` items on, for
            models with a GMF part), ``exact`` (always brute force) or ``approximate``.
        candidates: Items the first stage hands to exact re-scoring (at least ``k``).
        nprobe: Inverted lists searched per query.
    """

    mode: str = "auto"
    candidates: int = 200
    nprobe: int = 32

    def use_approximate(self, num_items: int, has_gmf: bool) -> bool:
        """Whether a model of ``num_items`` items (with or without a GMF part) gets the index."""
        if not has_gmf or self.mode == "exact":
            return False
        return self.mode == "approximate" or num_items >= APPROXIMATE_FROM_ITEMS


class ApproximateIndex:
    """An inner-product IVF index over item vectors, searched with exclusions."""

    def __init__(self, item_vectors: np.ndarray, nprobe: int, seed: int = 0) -> None:
        """Build the index (k-means on a sample, then every item assigned to its list).

        Args:
            item_vectors: ``[num_items, d]`` float32, the vectors the query's inner
                product is taken with.
            nprobe: Inverted lists searched per query.
            seed: Seed of the k-means sample and initialisation.
        """
        import faiss  # only models served approximately pay for the import

        self._faiss = faiss
        started = time.perf_counter()
        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        num_items, dim = vectors.shape
        self.num_lists = max(1, min(int(math.sqrt(num_items)), num_items // TRAIN_SAMPLE_PER_LIST))
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, self.num_lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        index.cp.seed = seed
        sample_size = min(num_items, TRAIN_SAMPLE_PER_LIST * self.num_lists)
        sample = np.random.default_rng(seed).choice(num_items, sample_size, replace=False)
        index.train(vectors[np.sort(sample)])
        index.add(vectors)
        faiss.omp_set_num_threads(1)  # a search serves one request on one gthread thread
        self._index = index
        self.nprobe = min(nprobe, self.num_lists)
        self._quantizer = quantizer  # the index refers to it; keep it alive
        LOGGER.info(
            "approximate index: %d items in %d lists, nprobe %d, built in %.2f s",
            num_items,
            self.num_lists,
            self.nprobe,
            time.perf_counter() - started,
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
