"""Serving fixtures: small model directories with random weights, in the real file format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from serving_support import random_artifacts

from training.artifacts import ModelArtifacts, load_model_dir, save_model_dir

MakeArtifacts = Callable[..., ModelArtifacts]


@pytest.fixture
def make_artifacts(tmp_path: Path) -> MakeArtifacts:
    """Build random artifacts, write them with ``save_model_dir`` and read them back."""
    counter = iter(range(1_000_000))

    def make(**kwargs: object) -> ModelArtifacts:
        directory = tmp_path / f"model-{next(counter)}"
        save_model_dir(directory, random_artifacts(**kwargs))  # type: ignore[arg-type]
        return load_model_dir(directory)

    return make


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A NeuMF model directory with random weights (30 users, 25 items)."""
    directory = tmp_path_factory.mktemp("random-model") / "model"
    save_model_dir(directory, random_artifacts())
    return directory
