"""The approximate first stage of large catalogs: its item vectors and its FAISS index.

Serving ranks a large catalog in two stages (``inference.retrieval``): candidates from an
inner-product index over *first-stage item vectors*, then exact re-scoring by the model.
Training's export builds the same index and stores it in the model directory
(``ncf_contract.model_dir``), so a served model reads it instead of building it at start
(4.7 s of a 1M-item NeuMF's 10.5 s to ``/ping``, 12 s at 3M items; BENCHMARKS.md). Both
sides compute what the index holds here, with the same code:

- ``item_terms``: the item side of a model's logit from its exported weights (the GMF
  item embeddings, hybrid's item bias, the items' MLP terms). ``inference.scoring`` scores
  with these arrays, and ``first_stage_vectors`` lays them out for the index:

  - gmf / ials: ``gmf_item`` (D = d); the query's inner product is the logit;
  - hybrid: ``[gmf_item, item_bias]`` (the query's last entry 1): the logit exactly;
  - neumf without hidden layers: ``[gmf_item, mlp_item_linear]``: the logit exactly;
  - neumf with hidden layers: ``[gmf_item, mlp_item_first]`` (D = d + L0): the GMF part
    exactly plus the item's first-MLP-layer term, against which the query carries a linear
    stand-in for the tower (``inference.scoring.NcfScorer.first_stage_query``);
  - mlp, ease and blend: no first stage (always scored exactly).

- ``build_index``: a FAISS ``IndexIVFFlat`` (inner product) over those vectors:
  ``number_of_lists`` inverted lists (about the square root of the item count), k-means
  (``KMEANS_ITERATIONS`` iterations, seed ``INDEX_SEED``) on ``TRAIN_SAMPLE_PER_LIST`` items
  per list drawn with the same seed, then every item assigned to its list, with every core.
- ``exports_index``: whether serving's ``auto`` mode searches a model through the index (a
  first stage and at least ``APPROXIMATE_FROM_ITEMS`` items); exactly then the model
  directory carries it.
- ``FirstStageIndex``: the stored index (``INDEX_FILE``, written by ``faiss.write_index``)
  with its description (``INDEX_INFO_FILE``, ``IndexInfo``: layout version, item count,
  dimension, list count and ``fingerprint``). ``read_index`` gives serving the index only
  when it belongs to the loaded weights; otherwise it raises ``IndexFileError`` and serving
  builds the index at load.

The fingerprint is a SHA-256 of the exported weight arrays the first-stage vectors are
computed from (names, dtypes, shapes and bytes; ``source_weight_names``), of the model type
and of ``LAYOUT_VERSION``. It is taken over the stored weights rather than the computed
vectors: those are a matrix product for NeuMF, whose last bits may differ between the
training and the serving machine's BLAS, while the weights' bytes do not. It costs one
pass over the item tables (0.25 s for 1M x 96 float32 on this machine). An index file
built from other weights (a model directory assembled from two jobs, weights replaced
by hand) fails it.

FAISS is imported only where an index is built, read or written, so scoring and
validation stay free of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ncf_contract.families import GMF_TOWER_FAMILIES, MLP_TOWER_FAMILIES

LOGGER = logging.getLogger(__name__)

#: Serving's ``auto`` mode searches the index from this many items on; the export stores it then.
APPROXIMATE_FROM_ITEMS = 200_000
#: Items per inverted list in the k-means training sample (FAISS warns below 39).
TRAIN_SAMPLE_PER_LIST = 40
#: k-means iterations of the coarse quantizer.
KMEANS_ITERATIONS = 10
#: Seed of the k-means sample and of its initialisation.
INDEX_SEED = 0
#: Version of the first-stage layout (which vectors, in which order); part of the fingerprint.
LAYOUT_VERSION = 1
#: The stored index (``faiss.write_index``) and its description, in the model directory.
INDEX_FILE = "first_stage.faiss"
INDEX_INFO_FILE = "first_stage.json"


class IndexFileError(Exception):
    """A stored first-stage index that cannot be used: unreadable, or not the weights' own."""


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass(frozen=True)
class ItemTerms:
    """The item side of a model's logit, from its exported weights (float32, C-contiguous).

    Attributes:
        gmf_item: ``[num_items, d]`` GMF item embeddings (the weights' own float32 array).
        item_bias: ``[num_items]`` hybrid's per-item bias.
        mlp_item_linear: ``[num_items]`` an item's part of the MLP logit when the MLP has no
            hidden layer (``mlp_item @ output_kernel[d + d_mlp:]``).
        mlp_item_first: ``[num_items, L0]`` an item's term of the first MLP layer, bias
            included (``mlp_item @ mlp_kernel_0[d_mlp:] + mlp_bias_0``).
    """

    gmf_item: np.ndarray | None = None
    item_bias: np.ndarray | None = None
    mlp_item_linear: np.ndarray | None = None
    mlp_item_first: np.ndarray | None = None


def source_weight_names(
    weights: Mapping[str, np.ndarray], family: str, num_mlp_layers: int
) -> list[str]:
    """The weight arrays ``item_terms`` reads for ``family``, in a fixed order."""
    names = []
    if family in GMF_TOWER_FAMILIES:
        names.append("gmf_item_embedding")
    if "item_bias" in weights:
        names.append("item_bias")
    if family in MLP_TOWER_FAMILIES:
        names.append("mlp_item_embedding")
        names += ["output_kernel"] if num_mlp_layers == 0 else ["mlp_kernel_0", "mlp_bias_0"]
    return names


def item_terms(weights: Mapping[str, np.ndarray], family: str, num_mlp_layers: int) -> ItemTerms:
    """The item side of the logit of a ``family`` model (see ``ItemTerms``)."""
    gmf_item = _f32(weights["gmf_item_embedding"]) if family in GMF_TOWER_FAMILIES else None
    gmf_dim = 0 if gmf_item is None else gmf_item.shape[1]
    mlp_item_linear = mlp_item_first = None
    if family in MLP_TOWER_FAMILIES:
        mlp_item = _f32(weights["mlp_item_embedding"])
        mlp_dim = mlp_item.shape[1]
        if num_mlp_layers == 0:
            # x_L = x_0 = concat(user, item): the item's half of the output kernel.
            output_kernel = _f32(np.asarray(weights["output_kernel"]).reshape(-1))
            mlp_item_linear = _f32(mlp_item @ output_kernel[gmf_dim + mlp_dim :])
        else:
            first_kernel = _f32(weights["mlp_kernel_0"])
            first_bias = _f32(np.asarray(weights["mlp_bias_0"]).reshape(-1))
            mlp_item_first = _f32(mlp_item @ first_kernel[mlp_dim:] + first_bias)
    return ItemTerms(
        gmf_item=gmf_item,
        item_bias=_f32(weights["item_bias"]) if "item_bias" in weights else None,
        mlp_item_linear=mlp_item_linear,
        mlp_item_first=mlp_item_first,
    )


def has_first_stage(model_type: str) -> bool:
    """Whether a ``model_type`` model can be searched through the index (it has a GMF tower)."""
    return model_type in GMF_TOWER_FAMILIES


def exports_index(model_type: str, num_items: int) -> bool:
    """Whether serving's ``auto`` mode uses the index for this model, so the export stores it."""
    return has_first_stage(model_type) and num_items >= APPROXIMATE_FROM_ITEMS


def first_stage_vectors(terms: ItemTerms) -> np.ndarray | None:
    """``[num_items, D]`` float32: the vectors the index holds (layout in the module docstring).

    ``None`` without a GMF part. For gmf and ials it is ``terms.gmf_item`` itself, no copy.
    """
    if terms.gmf_item is None:
        return None
    parts = [terms.gmf_item]
    for column in (terms.item_bias, terms.mlp_item_linear):
        if column is not None:
            parts.append(column[:, None])
    if terms.mlp_item_first is not None:
        parts.append(terms.mlp_item_first)
    return parts[0] if len(parts) == 1 else _f32(np.concatenate(parts, axis=1))


def first_stage_dim(weights: Mapping[str, np.ndarray], model_type: str, num_mlp_layers: int) -> int:
    """D of ``first_stage_vectors``, from the weights' shapes alone (0: no first stage)."""
    if not has_first_stage(model_type):
        return 0
    dim = int(np.shape(weights["gmf_item_embedding"])[1]) + int("item_bias" in weights)
    if model_type in MLP_TOWER_FAMILIES:
        dim += 1 if num_mlp_layers == 0 else int(np.shape(weights["mlp_kernel_0"])[1])
    return dim


def fingerprint(weights: Mapping[str, np.ndarray], model_type: str, num_mlp_layers: int) -> str:
    """SHA-256 of what the first-stage vectors are computed from (see the module docstring)."""
    digest = hashlib.sha256(f"first stage {LAYOUT_VERSION} {model_type} {num_mlp_layers}".encode())
    for name in source_weight_names(weights, model_type, num_mlp_layers):
        array = np.ascontiguousarray(weights[name])
        digest.update(f"|{name} {array.dtype.str} {array.shape}|".encode())
        digest.update(array.data)
    return "sha256:" + digest.hexdigest()


def number_of_lists(num_items: int) -> int:
    """Inverted lists of an index over ``num_items`` items: about sqrt(num_items)."""
    return max(1, min(int(math.sqrt(num_items)), num_items // TRAIN_SAMPLE_PER_LIST))


def build_index(item_vectors: np.ndarray, seed: int = INDEX_SEED) -> Any:
    """A trained and filled ``faiss.IndexIVFFlat`` (inner product) over ``item_vectors``.

    k-means on a sample of ``TRAIN_SAMPLE_PER_LIST`` items per list, then every item assigned
    to its list, with all cores (FAISS' thread count is restored afterwards).

    Args:
        item_vectors: ``[num_items, D]`` (taken as float32).
        seed: Seed of the k-means sample and initialisation.
    """
    import faiss  # only models with an index pay for the import

    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    num_items, dim = vectors.shape
    num_lists = number_of_lists(num_items)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        quantizer = faiss.IndexFlatIP(dim)
        # FAISS' Python wrapper keeps the quantizer alive as long as the index.
        index = faiss.IndexIVFFlat(quantizer, dim, num_lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = KMEANS_ITERATIONS
        index.cp.seed = seed
        sample_size = min(num_items, TRAIN_SAMPLE_PER_LIST * num_lists)
        sample = np.random.default_rng(seed).choice(num_items, sample_size, replace=False)
        index.train(vectors[np.sort(sample)])
        index.add(vectors)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


@dataclass(frozen=True)
class IndexInfo:
    """``first_stage.json``: what the stored index was built from.

    Attributes:
        layout_version: ``LAYOUT_VERSION`` of the vectors it holds.
        num_items: Items indexed (the model's catalog, positions as in ``items.parquet``).
        dim: D, the indexed vectors' dimension.
        num_lists: Inverted lists.
        fingerprint: ``fingerprint`` of the weights the vectors were computed from.
        faiss_version: The FAISS that wrote it.
        build_seconds: What building it took at export.
    """

    layout_version: int
    num_items: int
    dim: int
    num_lists: int
    fingerprint: str
    faiss_version: str = ""
    build_seconds: float = 0.0

    @classmethod
    def from_json(cls, text: str) -> IndexInfo:
        """Parse ``first_stage.json``.

        Raises:
            IndexFileError: Not JSON, or fields missing or unknown.
        """
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as error:
            raise IndexFileError(f"{INDEX_INFO_FILE} is not valid: {error}") from error


@dataclass(frozen=True)
class FirstStageIndex:
    """A stored first-stage index: its description and either the index or its file.

    Attributes:
        info: What it was built from.
        index: The FAISS index in memory (built at export), or ``None``.
        path: Its ``INDEX_FILE`` (a loaded model directory), or ``None``.
    """

    info: IndexInfo
    index: Any = None
    path: Path | None = None

    @classmethod
    def build(
        cls, weights: Mapping[str, np.ndarray], model_type: str, num_mlp_layers: int
    ) -> FirstStageIndex:
        """Build the index of a model's weights (the export's step; logs its cost).

        Raises:
            ValueError: ``model_type`` has no first stage.
        """
        import faiss

        vectors = first_stage_vectors(item_terms(weights, model_type, num_mlp_layers))
        if vectors is None:
            raise ValueError(f"a {model_type} model has no first stage to index")
        started = time.perf_counter()
        index = build_index(vectors)
        seconds = time.perf_counter() - started
        info = IndexInfo(
            layout_version=LAYOUT_VERSION,
            num_items=int(index.ntotal),
            dim=int(index.d),
            num_lists=int(index.nlist),
            fingerprint=fingerprint(weights, model_type, num_mlp_layers),
            faiss_version=str(faiss.__version__),
            build_seconds=round(seconds, 3),
        )
        LOGGER.info(
            "first-stage index: %d items x %d dims in %d lists, built in %.2f s",
            info.num_items,
            info.dim,
            info.num_lists,
            seconds,
        )
        return cls(info, index=index)

    @classmethod
    def from_directory(cls, directory: Path) -> FirstStageIndex | None:
        """The index stored in a model directory (not read yet), ``None`` if it has none.

        Raises:
            IndexFileError: One of its two files is missing, or its description is not valid.
        """
        index_file, info_file = directory / INDEX_FILE, directory / INDEX_INFO_FILE
        if not index_file.is_file() and not info_file.is_file():
            return None
        if not (index_file.is_file() and info_file.is_file()):
            raise IndexFileError(f"{INDEX_FILE} and {INDEX_INFO_FILE} go together; one is missing")
        try:
            text = info_file.read_text()
        except OSError as error:
            raise IndexFileError(f"{info_file} is unreadable: {error}") from error
        return cls(IndexInfo.from_json(text), path=index_file)

    def problem(
        self, weights: Mapping[str, np.ndarray], model_type: str, num_mlp_layers: int
    ) -> str | None:
        """What makes this index not match the model's shapes (cheap), or ``None``."""
        info = self.info
        dim = first_stage_dim(weights, model_type, num_mlp_layers)
        if info.layout_version != LAYOUT_VERSION:
            return f"layout version {info.layout_version}, this code reads {LAYOUT_VERSION}"
        if not dim:
            return f"a {model_type} model has no first stage to index"
        num_items = len(weights["gmf_item_embedding"])
        if (info.num_items, info.dim) != (num_items, dim):
            return (
                f"it indexes {info.num_items} items x {info.dim} dims; "
                f"the model's first stage is {num_items} x {dim}"
            )
        return None

    def read(self, weights: Mapping[str, np.ndarray], model_type: str, num_mlp_layers: int) -> Any:
        """The FAISS index, checked against the model's weights (shapes and fingerprint).

        Raises:
            IndexFileError: It does not match the weights (another model's index, or stale),
                or the file cannot be read; the message says which.
        """
        import faiss

        if (problem := self.problem(weights, model_type, num_mlp_layers)) is not None:
            raise IndexFileError(problem)
        expected = fingerprint(weights, model_type, num_mlp_layers)
        if self.info.fingerprint != expected:
            raise IndexFileError(
                "it was built from other weights (fingerprint "
                f"{self.info.fingerprint[:19]}..., the weights' {expected[:19]}...)"
            )
        index = self.index
        if index is None:
            try:
                index = faiss.read_index(str(self.path))
            except RuntimeError as error:  # FAISS' own read errors
                raise IndexFileError(f"{self.path} is unreadable: {error}") from error
        if not isinstance(index, faiss.IndexIVFFlat) or (index.ntotal, index.d) != (
            self.info.num_items,
            self.info.dim,
        ):
            raise IndexFileError(
                f"{self.path} holds a {type(index).__name__} of {index.ntotal} x {index.d}, "
                f"not the IndexIVFFlat of {self.info.num_items} x {self.info.dim} described"
            )
        return index

    def write(self, directory: Path) -> None:
        """Write ``INDEX_FILE`` and ``INDEX_INFO_FILE`` into ``directory``."""
        import faiss

        if self.index is not None:
            faiss.write_index(self.index, str(directory / INDEX_FILE))
        elif self.path is not None:
            if self.path.resolve() != (directory / INDEX_FILE).resolve():
                shutil.copyfile(self.path, directory / INDEX_FILE)
        else:
            raise ValueError("a FirstStageIndex without an index or a file has nothing to write")
        (directory / INDEX_INFO_FILE).write_text(
            json.dumps(asdict(self.info), indent=2, sort_keys=True) + "\n"
        )
