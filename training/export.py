"""Writing the model directory serving loads (see ``ncf_contract.model_dir``).

Everything is written into a scratch directory first; ``publish_model_dir``
moves it into ``model/`` as the job's last step, so a failure never leaves a
half-written model.

A model that serving's ``auto`` mode searches through its approximate first stage (a
GMF tower and at least ``ncf_contract.first_stage.APPROXIMATE_FROM_ITEMS`` items) also
gets that stage's FAISS index (``first_stage.faiss``), built here by ``save_model_dir``
with serving's own code, so a served model reads it instead of building it at start
(the job's log says what it cost: about 5 s at 1M items, BENCHMARKS.md "Serving large
catalogs").
"""

from __future__ import annotations

import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from ncf_contract.model_dir import ModelArtifacts, ModelMetadata, save_model_dir
from training.config import TrainingConfig
from training.dataset import Dataset
from training.families.base import FittedModel


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced the model."""
    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "pandas", "pyarrow"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def build_artifacts(
    model: FittedModel,
    config: TrainingConfig,
    dataset: Dataset,
    metrics: dict[str, Any],
) -> ModelArtifacts:
    """Everything serving needs, in memory."""
    items, users = dataset.item_attributes, dataset.user_attributes
    return ModelArtifacts(
        metadata=ModelMetadata(
            model_type=model.model_type,
            feedback=config.feedback,
            output_activation=model.output_activation,
            num_mlp_layers=model.num_mlp_layers,
            config=config.to_json(),
            data=dataset.statistics(),
            metrics=metrics,
            versions=library_versions(),
        ),
        weights=model.model_weights(),
        user_ids=np.asarray(dataset.users.ids, dtype=object).astype(str),
        item_ids=np.asarray(dataset.items.ids, dtype=object).astype(str),
        item_popularity=np.asarray(dataset.item_popularity, dtype=np.int64),
        seen=dataset.all_seen,
        item_attributes=None if items is None else items.schema,
        user_attributes=None if users is None else users.schema,
        item_features=None if items is None else items.features,
        content=None if items is None else items.content,
        item_trending=dataset.item_trending,
    )


def write_model(scratch: Path, artifacts: ModelArtifacts, model: FittedModel) -> None:
    """Write the model directory: the contract's files (with the first-stage index), extras."""
    save_model_dir(scratch, artifacts)
    model.write_extras(scratch)
