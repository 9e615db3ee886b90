"""Fixtures shared by every test module: synthetic data, a SageMaker layout, a real S3 server.

The S3 server is moto in server mode: a real HTTP endpoint on a free loopback
port, reached by boto3 (and by code under test) through ``AWS_ENDPOINT_URL``.
No test talks to real AWS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from ncf_test_support import (
    QUICK_HYPERPARAMETERS,
    MotoServer,
    SageMakerLayout,
    docker_available,
    free_port,
    run_container_script,
)

from training.synthetic import make_interactions

#: The Docker image fixtures (one conftest.py per tree keeps module names unique for mypy).
pytest_plugins = ("container_fixtures",)


@pytest.fixture(scope="session")
def interactions() -> pd.DataFrame:
    """A small clustered interaction log (200 users, 120 items, 20 each)."""
    return make_interactions()


@pytest.fixture
def sagemaker_layout(tmp_path: Path) -> SageMakerLayout:
    """An empty SageMaker directory tree under ``tmp_path``."""
    base = tmp_path / "opt_ml"
    base.mkdir()
    return SageMakerLayout(base)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A moto server over real HTTP on a free port, for the whole test session.

    It listens on all interfaces so that containers on the host network can
    reach it too.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(endpoint_url=f"http://127.0.0.1:{port}", port=port)
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point this test's AWS clients (boto3, the SageMaker SDK) at the moto server."""
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``docker`` tests without an engine, unless ``NCF_REQUIRE_DOCKER=1`` demands one."""
    docker_items = [item for item in items if "docker" in item.keywords]
    if not docker_items or docker_available():
        return
    if os.environ.get("NCF_REQUIRE_DOCKER") == "1":
        reason = "NCF_REQUIRE_DOCKER=1 but no Docker engine answers `docker info`"
        for item in docker_items:
            item.add_marker(pytest.mark.xfail(reason=reason, run=False, strict=True))
        raise pytest.UsageError(reason)
    skip = pytest.mark.skip(
        reason="no Docker engine answers `docker info` "
        "(run ../shared/tools/docker-here, or set NCF_REQUIRE_DOCKER=1 to make this an error)"
    )
    for item in docker_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory written by the real ``train`` program on synthetic data.

    Session-scoped: one short training run serves every test that needs a model.
    """
    layout = SageMakerLayout(tmp_path_factory.mktemp("trained") / "opt_ml")
    layout.base_dir.mkdir()
    layout.write_channel("train", make_interactions())
    layout.write_config(QUICK_HYPERPARAMETERS)
    result = run_container_script("train", layout.base_dir)
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    return layout.model_dir
