"""Writing the model directory serving loads (see ``ncf_contract.model_dir``).

Everything is written into a scratch directory first; ``publish_model_dir``
moves it into ``model/`` as the job's last step, so a failure never leaves a
half-written model.
"""

from __future__ import annotations

import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ncf_contract.model_dir import SAVED_MODEL_DIR, ModelArtifacts, ModelMetadata, save_model_dir
from training.config import TrainingConfig
from training.dataset import Dataset
from training.model import NCF


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced the model."""
    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "pandas", "pyarrow"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


class _ServingModule(tf.Module):
    """TF Serving signature: ``user_index, item_index`` int64 ``[batch]`` -> ``score`` float32."""

    def __init__(self, model: NCF) -> None:
        super().__init__()
        self.model = model

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int64, name="user_index"),
            tf.TensorSpec([None], tf.int64, name="item_index"),
        ]
    )
    def serve(self, user_index: tf.Tensor, item_index: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = self.model((user_index, item_index), training=False)
        return {"score": tf.cast(tf.reshape(scores, [-1]), tf.float32)}


def save_saved_model(model: NCF, directory: Path) -> None:
    """Write a TensorFlow SavedModel with a ``serving_default`` signature."""
    module = _ServingModule(model)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


def build_artifacts(
    model: NCF,
    config: TrainingConfig,
    dataset: Dataset,
    metrics: dict[str, Any],
) -> ModelArtifacts:
    """Everything serving needs, in memory."""
    return ModelArtifacts(
        metadata=ModelMetadata(
            model_type=config.model_type,
            feedback=config.feedback,
            output_activation=model.output_activation,
            num_mlp_layers=model.num_mlp_layers,
            config=config.to_json(),
            data=dataset.statistics(),
            metrics=metrics,
            versions=library_versions(),
        ),
        weights=model.export_weights(),
        user_ids=np.asarray(dataset.users.ids, dtype=object).astype(str),
        item_ids=np.asarray(dataset.items.ids, dtype=object).astype(str),
        item_popularity=np.asarray(dataset.item_popularity, dtype=np.int64),
        seen=dataset.all_seen,
    )


def write_model(scratch: Path, artifacts: ModelArtifacts, model: NCF) -> None:
    """Write the full model directory (files and ``saved_model/``) into ``scratch``."""
    save_model_dir(scratch, artifacts)
    save_saved_model(model, scratch / SAVED_MODEL_DIR)
