"""Fixtures for the Docker tests (loaded by tests/conftest.py): the image, a server, a job.

Helpers live in ``container_helpers``. Docker's layer cache makes every build after
the first take seconds, so the image is always rebuilt from the working tree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from container_helpers import (
    BASE_IMAGE,
    CONTAINER_HYPERPARAMETERS,
    TEST_IMAGE,
    Server,
    StartServer,
    TrainingRun,
    describe,
    docker,
    run_container,
)
from ncf_test_support import REPO_ROOT, SageMakerLayout, free_port

from training.synthetic import make_interactions


@pytest.fixture(scope="session")
def image() -> str:
    """The image, built once per session from the working tree."""
    started = time.monotonic()
    result = docker(
        "build",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-t",
        TEST_IMAGE,
        str(REPO_ROOT),
        timeout=1800,
    )
    assert result.returncode == 0, f"docker build failed:\n{describe(result)}"
    print(f"built {TEST_IMAGE} on {BASE_IMAGE} in {time.monotonic() - started:.0f} s")
    return TEST_IMAGE


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start ``IMAGE serve`` detached on a free loopback port; removed after the test."""
    names: list[str] = []

    def start(image: str, model_dir: Path) -> Server:
        name = f"ncf-test-serve-{uuid.uuid4().hex[:8]}"
        port = free_port()
        result = docker(
            "run",
            "-d",
            "--name",
            name,
            "-p",
            f"127.0.0.1:{port}:8080",
            "-v",
            f"{model_dir}:/opt/ml/model:ro",
            image,
            "serve",
        )
        assert result.returncode == 0, describe(result)
        names.append(name)
        return Server(name=name, url=f"http://127.0.0.1:{port}")

    yield start
    for name in names:
        docker("rm", "-f", name)


@pytest.fixture(scope="session")
def container_training(image: str, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """``docker run -v LAYOUT:/opt/ml IMAGE train`` on synthetic data, once per session."""
    layout = SageMakerLayout(tmp_path_factory.mktemp("container-trained") / "opt_ml")
    layout.base_dir.mkdir()
    layout.write_channel("train", make_interactions())
    layout.write_config(CONTAINER_HYPERPARAMETERS)
    return TrainingRun(layout=layout, result=run_container(image, "train", layout.base_dir))
