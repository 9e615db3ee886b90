"""The model directory: what training writes to ``/opt/ml/model`` and serving loads.

This module is the contract between the two halves of the product: training
writes a model directory with ``save_model_dir`` + ``publish_model_dir``, serving
reads it with ``load_model_dir``. It imports no TensorFlow, so the serving
workers stay light.

Layout of a model directory::

    model/
      metadata.json     format version, model type, config, data statistics,
                        metrics and library versions (see ``ModelMetadata``)
      weights.npz       the learned arrays, named as in ``WEIGHT_NAMES`` below,
                        so serving scores with NumPy without loading TensorFlow
      users.parquet     one row per user index: ``user_id`` (string)
      items.parquet     one row per item index: ``item_id`` (string),
                        ``popularity`` (int64, training interactions)
      seen.npz          CSR of each user's seen item indices: ``indptr``
                        (int64, num_users + 1) and ``indices`` (int32);
                        see ``ncf_contract.seen``
      saved_model/      a TensorFlow SavedModel (TF Serving can load it) whose
                        ``serving_default`` signature takes ``user_index`` and
                        ``item_index`` (int64, ``[batch]``) and returns
                        ``score`` (float32, ``[batch]``); GMF / MLP / NeuMF only

    With the ``items`` / ``users`` channels (any family; ``ncf_contract.attributes``):

      attributes.json   ``{"items": schema, "users": schema}`` (either may be
                        absent): each attribute column's kind and feature block
      item_features.npz the items' feature matrix (scipy.sparse CSR,
                        ``[num_items, item features]`` float32): the model's
                        input, and what request filters match values against
      content.npz       unit TF-IDF rows of each item's categorical, multi-valued
                        and text attributes (scipy.sparse CSR, ``[num_items,
                        terms]`` float32): content-based similar items

    For a model that serving's ``auto`` mode searches through its approximate first
    stage (a GMF tower, ``ncf_contract.first_stage.APPROXIMATE_FROM_ITEMS`` items or
    more; ``ncf_contract.first_stage``):

      first_stage.faiss the first stage's FAISS ``IndexIVFFlat`` (inner product;
                        ``faiss.write_index``) over the items' first-stage vectors,
                        item positions as ids; one float32 copy of those vectors
                        (``num_items x D x 4`` bytes) plus the list centroids
      first_stage.json  what it was built from (``IndexInfo``): ``layout_version``,
                        ``num_items``, ``dim`` (D), ``num_lists``, ``fingerprint``
                        (SHA-256 of the weight arrays the vectors come from),
                        ``faiss_version`` and ``build_seconds``

    The two files go together. ``save_model_dir`` builds and writes them when
    ``ModelArtifacts.first_stage_index`` is not given and the model qualifies. The index
    is valid for a directory when its item count and dimension are the model's
    (``validate``) and its fingerprint is that of the directory's weights (checked by
    serving before it uses the index). A directory without them, or with an index that
    is not valid for it, still loads: serving builds the index at start instead and says
    why in its log (``load_model_dir`` drops an index whose description does not match,
    with a warning).

    ``items.parquet`` has a ``trending`` column (int64, interactions within the
    last ``trending_window`` days of ``train``) when that hyperparameter is set.

The arithmetic the weights encode (``u`` a user index, ``i`` an item index;
``ncf_contract.reference_scoring`` evaluates it plainly)::

    gmf    = gmf_user_embedding[u] * gmf_item_embedding[i]                 [d_gmf]
    x_0    = concat(mlp_user_embedding[u], mlp_item_embedding[i])          [2 * d_mlp]
    x_l+1  = relu(x_l @ mlp_kernel_l + mlp_bias_l)   for l = 0 .. L-1      [layers[l]]
    h      = gmf (GMF) | x_L (MLP) | concat(gmf, x_L) (NeuMF)
    logit  = h @ output_kernel[:, 0] + output_bias[0]
    score  = sigmoid(logit) if output_activation == "sigmoid" else logit

The hybrid (``model_type`` ``hybrid``, ``training.families.hybrid``) is GMF with
precomputed vectors: ``gmf_user_embedding`` / ``gmf_item_embedding`` already
include the attribute embeddings, ``output_kernel`` is all ones, and its
``item_bias`` ``[num_items]`` is added to the logit::

    logit  = gmf_user_embedding[u] . gmf_item_embedding[i] + item_bias[i] + output_bias[0]

A user unknown to the model but with attributes ``y`` (encoded as in
``ncf_contract.attributes``) has the vector ``y @ user_feature_embedding``
(``[user features, d]``, present when the ``users`` channel was given).

``ials`` is written as a GMF model whose output layer is the identity (``output_kernel``
all ones ``[d, 1]``, ``output_bias`` 0, ``output_activation`` linear), so its score is the
dot product ``gmf_user_embedding[u] @ gmf_item_embedding[i]`` of the ALS factors exactly.

``ease`` has one weight, ``ease_item_item`` (float32 ``[num_items, num_items]``, zero
diagonal), and no user parameters; a user's score row is their history's indicator row
times it (``output_activation`` linear)::

    x      = indicator row of the user's history                           [num_items]
    score  = x @ ease_item_item                                            [num_items]

``blend`` holds an EASE model and an iALS model side by side: ``ease_item_item``, the
iALS factors as ``gmf_user_embedding`` / ``gmf_item_embedding`` with the identity output
layer, and ``blend_weights`` (float32 ``[2]``, the EASE and iALS shares, summing to 1).
Each part's score row over the whole catalog is standardised (``z(r) = (r - mean(r)) /
std(r)``, ``ncf_contract.ranking.standardise_rows``) before they are mixed::

    score  = blend_weights[0] * z(x @ ease_item_item)
           + blend_weights[1] * z(gmf_item_embedding @ gmf_user_embedding[u])

During training (validation and test metrics) the history is the train split's
interactions; a served model takes it from ``seen.npz``, that is every interaction the
model directory holds (train, validation and test), or from a request's ``history``.
The NCF families alone also write ``saved_model/``.

Write with ``save_model_dir`` into a scratch directory and move it into place
with ``publish_model_dir``, so a failed job never leaves a half-written model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_contract import first_stage
from ncf_contract.attributes import AttributeSchema
from ncf_contract.families import (
    BLEND,
    EASE,
    GMF_TOWER_FAMILIES,
    HYBRID,
    MLP_TOWER_FAMILIES,
    MODEL_FAMILIES,
    OUTPUT_ACTIVATIONS,
)
from ncf_contract.first_stage import FirstStageIndex, IndexFileError
from ncf_contract.seen import SeenItems

LOGGER = logging.getLogger(__name__)

FORMAT_VERSION = 1

METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.npz"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
SEEN_FILE = "seen.npz"
SAVED_MODEL_DIR = "saved_model"
ATTRIBUTES_FILE = "attributes.json"
ITEM_FEATURES_FILE = "item_features.npz"
CONTENT_FILE = "content.npz"

#: Weight arrays every model type must provide (MLP kernels are numbered).
GMF_WEIGHTS = ("gmf_user_embedding", "gmf_item_embedding")
MLP_WEIGHTS = ("mlp_user_embedding", "mlp_item_embedding")
OUTPUT_WEIGHTS = ("output_kernel", "output_bias")
HYBRID_WEIGHTS = ("item_bias",)
EASE_WEIGHTS = ("ease_item_item",)
BLEND_WEIGHTS = ("blend_weights",)


class ArtifactError(Exception):
    """A model directory is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class ModelMetadata:
    """What ``metadata.json`` holds.

    Attributes:
        model_type: One of ``ncf_contract.families.MODEL_FAMILIES``.
        feedback: ``"implicit"`` (scores are probabilities) or ``"explicit"``
            (scores are predicted ratings).
        output_activation: One of ``ncf_contract.families.OUTPUT_ACTIVATIONS``.
        num_mlp_layers: How many ``mlp_kernel_<l>`` / ``mlp_bias_<l>`` pairs
            ``weights.npz`` holds (0 for GMF).
        config: The training configuration, as plain JSON values.
        data: Data statistics (users, items, interactions, ...).
        metrics: Final metrics (validation and test).
        versions: Library versions that produced the model.
        format_version: The layout version of the model directory.
    """

    model_type: str
    feedback: str
    output_activation: str
    num_mlp_layers: int
    config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class ModelArtifacts:
    """Everything serving needs, in memory.

    Attributes:
        metadata: The parsed ``metadata.json``.
        weights: Arrays named as in the module docstring.
        user_ids: ``[num_users]`` raw user ids (strings); position = index.
        item_ids: ``[num_items]`` raw item ids (strings); position = index.
        item_popularity: ``[num_items]`` int64 training interaction counts.
        seen: The items each user interacted with (``num_users`` rows).
        item_attributes, user_attributes: The attribute schemas, if any.
        item_features: ``[num_items, item features]`` CSR, with ``item_attributes``.
        content: ``[num_items, terms]`` CSR of unit TF-IDF rows, with ``item_attributes``.
        item_trending: ``[num_items]`` int64 recent interaction counts, if any.
        first_stage_index: The stored approximate first-stage index, if any
            (``first_stage.faiss`` / ``first_stage.json``).
    """

    metadata: ModelMetadata
    weights: Mapping[str, np.ndarray]
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_popularity: np.ndarray
    seen: SeenItems
    item_attributes: AttributeSchema | None = None
    user_attributes: AttributeSchema | None = None
    item_features: sp.csr_matrix | None = None
    content: sp.csr_matrix | None = None
    item_trending: np.ndarray | None = None
    first_stage_index: FirstStageIndex | None = None

    @property
    def num_users(self) -> int:
        """Number of users the model knows."""
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        """Number of items the model knows."""
        return len(self.item_ids)

    def validate(self) -> None:
        """Check shapes and names agree.

        Raises:
            ArtifactError: What is inconsistent, with the shapes received.
        """
        meta = self.metadata
        if meta.format_version != FORMAT_VERSION:
            raise ArtifactError(
                f"model format_version {meta.format_version} is not supported "
                f"(this code reads version {FORMAT_VERSION})"
            )
        if meta.model_type not in MODEL_FAMILIES:
            raise ArtifactError(
                f"unknown model_type {meta.model_type!r}; expected one of {MODEL_FAMILIES}"
            )
        if meta.output_activation not in OUTPUT_ACTIVATIONS:
            raise ArtifactError(
                f"unknown output_activation {meta.output_activation!r}; "
                f"expected {OUTPUT_ACTIVATIONS}"
            )
        missing = [name for name in required_weight_names(meta) if name not in self.weights]
        if missing:
            raise ArtifactError(f"{WEIGHTS_FILE} lacks {missing} for a {meta.model_type} model")
        for prefix in ("gmf", "mlp"):
            user_key, item_key = f"{prefix}_user_embedding", f"{prefix}_item_embedding"
            if user_key in self.weights and self.weights[user_key].shape[0] != self.num_users:
                raise ArtifactError(
                    f"{user_key} has {self.weights[user_key].shape[0]} rows "
                    f"but {USERS_FILE} has {self.num_users} users"
                )
            if item_key in self.weights and self.weights[item_key].shape[0] != self.num_items:
                raise ArtifactError(
                    f"{item_key} has {self.weights[item_key].shape[0]} rows "
                    f"but {ITEMS_FILE} has {self.num_items} items"
                )
        item_item = self.weights.get(EASE_WEIGHTS[0])
        if item_item is not None and item_item.shape != (self.num_items, self.num_items):
            raise ArtifactError(
                f"{EASE_WEIGHTS[0]} has shape {item_item.shape} "
                f"but {ITEMS_FILE} has {self.num_items} items (expected items x items)"
            )
        _check_blend_shares(self.weights.get(BLEND_WEIGHTS[0]))
        not_finite = [name for name, array in self.weights.items() if not np.isfinite(array).all()]
        if not_finite:
            raise ArtifactError(
                f"{WEIGHTS_FILE} holds NaN or infinite values in {sorted(not_finite)}; "
                "the model is broken, retrain it"
            )
        if len(self.item_popularity) != self.num_items:
            raise ArtifactError("item popularity and item vocabulary differ in length")
        if self.item_trending is not None and len(self.item_trending) != self.num_items:
            raise ArtifactError("item trending counts and item vocabulary differ in length")
        self._validate_optional_parts()
        if self.seen.num_users != self.num_users or self.seen.num_items != self.num_items:
            raise ArtifactError(
                f"{SEEN_FILE} is {self.seen.num_users} users x {self.seen.num_items} items; "
                f"expected {self.num_users} x {self.num_items}"
            )

    def first_stage_index_problem(self) -> str | None:
        """Why ``first_stage_index`` does not fit the weights' shapes, or ``None``.

        The fingerprint, a pass over the item tables, is checked where the index is used
        (``FirstStageIndex.read``) and when it is saved.
        """
        if self.first_stage_index is None:
            return None
        meta = self.metadata
        return self.first_stage_index.problem(self.weights, meta.model_type, meta.num_mlp_layers)

    def _validate_optional_parts(self) -> None:
        """Item bias, attribute files and the first-stage index."""
        if (problem := self.first_stage_index_problem()) is not None:
            raise ArtifactError(f"{first_stage.INDEX_FILE} does not fit the model: {problem}")
        if "item_bias" in self.weights and len(self.weights["item_bias"]) != self.num_items:
            raise ArtifactError(
                f"item_bias has {len(self.weights['item_bias'])} rows but {ITEMS_FILE} has "
                f"{self.num_items} items"
            )
        if (self.item_features is None) != (self.item_attributes is None):
            raise ArtifactError(
                f"{ITEM_FEATURES_FILE} and the items of {ATTRIBUTES_FILE} go together"
            )
        for name, matrix in (
            (ITEM_FEATURES_FILE, self.item_features),
            (CONTENT_FILE, self.content),
        ):
            if matrix is not None and matrix.shape[0] != self.num_items:
                raise ArtifactError(
                    f"{name} has {matrix.shape[0]} rows, expected {self.num_items} (one per item)"
                )
        if (
            self.item_features is not None
            and self.item_attributes is not None
            and self.item_features.shape[1] != self.item_attributes.num_features
        ):
            raise ArtifactError(
                f"{ITEM_FEATURES_FILE} has {self.item_features.shape[1]} columns but "
                f"{ATTRIBUTES_FILE} describes {self.item_attributes.num_features} item features"
            )
        table = self.weights.get("user_feature_embedding")
        if table is not None and (
            self.user_attributes is None or table.shape[0] != self.user_attributes.num_features
        ):
            raise ArtifactError(
                f"user_feature_embedding has {table.shape[0]} rows but {ATTRIBUTES_FILE} "
                "describes a different number of user features"
            )


def _check_blend_shares(shares: np.ndarray | None) -> None:
    """A blend's ``blend_weights``: two shares in [0, 1] (``None``: not a blend)."""
    if shares is not None and (shares.shape != (2,) or not np.all((shares >= 0) & (shares <= 1))):
        raise ArtifactError(
            f"{BLEND_WEIGHTS[0]} must hold two shares in [0, 1], got {shares.tolist()}"
        )


def required_weight_names(metadata: ModelMetadata) -> list[str]:
    """The weight names a model of ``metadata.model_type`` must carry."""
    if metadata.model_type == EASE:
        return list(EASE_WEIGHTS)
    if metadata.model_type == BLEND:
        return [*EASE_WEIGHTS, *GMF_WEIGHTS, *OUTPUT_WEIGHTS, *BLEND_WEIGHTS]
    names: list[str] = list(OUTPUT_WEIGHTS)
    if metadata.model_type in GMF_TOWER_FAMILIES:
        names += GMF_WEIGHTS
    if metadata.model_type == HYBRID:
        names += HYBRID_WEIGHTS
    if metadata.model_type in MLP_TOWER_FAMILIES:
        names += MLP_WEIGHTS
        for layer in range(metadata.num_mlp_layers):
            names += [f"mlp_kernel_{layer}", f"mlp_bias_{layer}"]
    return names


def save_model_dir(directory: Path, artifacts: ModelArtifacts) -> None:
    """Write every file except ``saved_model/`` (TensorFlow writes that itself).

    Args:
        directory: A scratch directory; created if missing.
        artifacts: What to write. Validated first.

    Raises:
        ArtifactError: ``artifacts`` is inconsistent.
    """
    artifacts.validate()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METADATA_FILE).write_text(
        json.dumps(asdict(artifacts.metadata), indent=2, sort_keys=True, default=str) + "\n"
    )
    weights: dict[str, Any] = {k: np.asarray(v) for k, v in artifacts.weights.items()}
    np.savez(directory / WEIGHTS_FILE, **weights)
    pd.DataFrame({"user_id": artifacts.user_ids.astype(str)}).to_parquet(
        directory / USERS_FILE, index=False
    )
    items = pd.DataFrame(
        {
            "item_id": artifacts.item_ids.astype(str),
            "popularity": artifacts.item_popularity.astype(np.int64),
        }
    )
    if artifacts.item_trending is not None:
        items["trending"] = artifacts.item_trending.astype(np.int64)
    items.to_parquet(directory / ITEMS_FILE, index=False)
    schemas = {
        side: schema.to_json()
        for side, schema in (
            ("items", artifacts.item_attributes),
            ("users", artifacts.user_attributes),
        )
        if schema is not None
    }
    if schemas:
        (directory / ATTRIBUTES_FILE).write_text(json.dumps(schemas, ensure_ascii=False) + "\n")
    for name, matrix in (
        (ITEM_FEATURES_FILE, artifacts.item_features),
        (CONTENT_FILE, artifacts.content),
    ):
        if matrix is not None:
            sp.save_npz(directory / name, sp.csr_matrix(matrix, dtype=np.float32))
    np.savez(
        directory / SEEN_FILE,
        indptr=artifacts.seen.indptr.astype(np.int64),
        indices=artifacts.seen.indices.astype(np.int32),
    )
    save_first_stage_index(directory, artifacts)


def save_first_stage_index(directory: Path, artifacts: ModelArtifacts) -> FirstStageIndex | None:
    """Write the first-stage index given, or build it when serving's ``auto`` mode uses one.

    ``save_model_dir``'s last step; also adds the index to a directory written without it.

    Returns:
        The index written, or ``None`` when the model needs none.

    Raises:
        ArtifactError: The index given was built from other weights.
    """
    meta = artifacts.metadata
    index = artifacts.first_stage_index
    if index is None:
        if not first_stage.exports_index(meta.model_type, artifacts.num_items):
            return None
        index = FirstStageIndex.build(artifacts.weights, meta.model_type, meta.num_mlp_layers)
    elif index.info.fingerprint != first_stage.fingerprint(
        artifacts.weights, meta.model_type, meta.num_mlp_layers
    ):
        raise ArtifactError(
            f"the {first_stage.INDEX_FILE} given was built from other weights; "
            "leave first_stage_index unset and save_model_dir builds it"
        )
    index.write(directory)
    return index


def load_model_dir(directory: Path) -> ModelArtifacts:
    """Read a model directory written by training.

    Raises:
        ArtifactError: A file is missing or unreadable, or the parts disagree;
            the message names the file.
    """
    if not directory.is_dir():
        raise ArtifactError(f"model directory {directory} does not exist")
    try:
        raw_meta = json.loads((directory / METADATA_FILE).read_text())
        metadata = ModelMetadata(**raw_meta)
    except FileNotFoundError as error:
        raise ArtifactError(f"{directory / METADATA_FILE} is missing") from error
    except (ValueError, TypeError) as error:
        raise ArtifactError(f"{directory / METADATA_FILE} is not valid: {error}") from error
    missing = [
        name
        for name in (WEIGHTS_FILE, USERS_FILE, ITEMS_FILE, SEEN_FILE)
        if not (directory / name).is_file()
    ]
    if missing:
        raise ArtifactError(f"model file(s) {missing} missing from {directory}")
    try:
        with np.load(directory / WEIGHTS_FILE, allow_pickle=False) as weights_file:
            weights = {name: weights_file[name] for name in weights_file.files}
        users = pd.read_parquet(directory / USERS_FILE)
        items = pd.read_parquet(directory / ITEMS_FILE)
        with np.load(directory / SEEN_FILE, allow_pickle=False) as seen_file:
            seen_indptr, seen_indices = seen_file["indptr"], seen_file["indices"]
        user_ids = users["user_id"].to_numpy(dtype=object).astype(str)
        item_ids = items["item_id"].to_numpy(dtype=object).astype(str)
        item_popularity = items["popularity"].to_numpy(dtype=np.int64)
        item_trending = (
            items["trending"].to_numpy(dtype=np.int64) if "trending" in items.columns else None
        )
        optional = _load_attribute_files(directory)
    except ArtifactError:
        raise
    except Exception as error:  # corrupt zip, parquet or missing column
        raise ArtifactError(f"a model file in {directory} is unreadable: {error!r}") from error
    try:
        seen = SeenItems.from_csr(seen_indptr, seen_indices, len(item_ids))
    except ValueError as error:
        raise ArtifactError(f"{directory / SEEN_FILE} is not valid: {error}") from error
    artifacts = ModelArtifacts(
        metadata=metadata,
        weights=weights,
        user_ids=user_ids,
        item_ids=item_ids,
        item_popularity=item_popularity,
        seen=seen,
        item_trending=item_trending,
        **optional,
    )
    artifacts.validate()
    return _with_first_stage_index(directory, artifacts)


def _with_first_stage_index(directory: Path, artifacts: ModelArtifacts) -> ModelArtifacts:
    """``artifacts`` with the directory's first-stage index when it fits the weights.

    An index that does not is left out with a warning (serving then builds one at load):
    it never stops a model from loading.
    """
    try:
        index = FirstStageIndex.from_directory(directory)
    except IndexFileError as error:
        LOGGER.warning("%s: the stored first-stage index is left out: %s", directory, error)
        return artifacts
    if index is None:
        return artifacts
    with_index = dataclasses.replace(artifacts, first_stage_index=index)
    if (problem := with_index.first_stage_index_problem()) is not None:
        LOGGER.warning(
            "%s: the stored first-stage index does not fit the model and is left out: %s",
            directory,
            problem,
        )
        return artifacts
    return with_index


def _load_attribute_files(directory: Path) -> dict[str, Any]:
    """The optional attribute files: attributes.json, item_features.npz, content.npz."""
    if not (directory / ATTRIBUTES_FILE).is_file():
        return {}
    try:
        schemas = json.loads((directory / ATTRIBUTES_FILE).read_text())
        loaded: dict[str, Any] = {
            f"{side[:-1]}_attributes": AttributeSchema.from_json(schemas[side])
            for side in ("items", "users")
            if side in schemas
        }
    except (ValueError, TypeError, KeyError) as error:
        raise ArtifactError(f"{directory / ATTRIBUTES_FILE} is not valid: {error}") from error
    for key, name in (("item_features", ITEM_FEATURES_FILE), ("content", CONTENT_FILE)):
        if (directory / name).is_file():
            loaded[key] = sp.csr_matrix(sp.load_npz(directory / name), dtype=np.float32)
    return loaded


def publish_model_dir(scratch: Path, model_dir: Path) -> None:
    """Move a complete model from ``scratch`` into ``model_dir``, last step of a job.

    ``model_dir`` may be a mount point (SageMaker's ``/opt/ml/model``) that
    cannot itself be replaced, so its contents are replaced entry by entry;
    each entry is renamed when both sides share a filesystem.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    for existing in model_dir.iterdir():
        if existing.is_dir() and not existing.is_symlink():
            shutil.rmtree(existing)
        else:
            existing.unlink()
    for entry in sorted(scratch.iterdir()):
        target = model_dir / entry.name
        try:
            os.replace(entry, target)
        except OSError:  # different filesystems
            shutil.move(str(entry), str(target))
