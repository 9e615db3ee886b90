"""Fixtures shared by every test module: synthetic data, a SageMaker layout, a real S3 server.

The S3 server is moto in server mode: a real HTTP endpoint on a free loopback
port, reached by boto3 (and by code under test) through ``AWS_ENDPOINT_URL``.
No test talks to real AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from training.synthetic import make_interactions

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def interactions() -> pd.DataFrame:
    """A small clustered interaction log (200 users, 120 items, 20 each)."""
    return make_interactions()


@dataclass(frozen=True)
class SageMakerLayout:
    """A temporary ``/opt/ml`` tree (``SAGEMAKER_BASE_DIR``) for a training or serving run."""

    base_dir: Path

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.base_dir / "output" / "data"

    @property
    def failure_file(self) -> Path:
        return self.base_dir / "output" / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base_dir / "checkpoints"

    def channel_dir(self, channel: str) -> Path:
        return self.base_dir / "input" / "data" / channel

    def write_channel(self, channel: str, frame: pd.DataFrame, name: str = "part-0.csv") -> Path:
        """Write ``frame`` as one file of ``channel`` (CSV, TSV, .gz or Parquet by suffix)."""
        path = self.channel_dir(channel) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".parquet"):
            frame.to_parquet(path, index=False)
        else:
            separator = "\t" if ".tsv" in name else ","
            frame.to_csv(path, index=False, sep=separator)
        return path

    def write_config(
        self,
        hyperparameters: dict[str, object] | None = None,
        channels: tuple[str, ...] = ("train",),
    ) -> None:
        """Write the three JSON files SageMaker puts in ``input/config``.

        Hyperparameter values are written as strings, as SageMaker does.
        """
        config_dir = self.base_dir / "input" / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        as_strings = {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in (hyperparameters or {}).items()
        }
        (config_dir / "hyperparameters.json").write_text(json.dumps(as_strings))
        (config_dir / "inputdataconfig.json").write_text(
            json.dumps(
                {
                    channel: {
                        "TrainingInputMode": "File",
                        "S3DistributionType": "FullyReplicated",
                        "RecordWrapperType": "None",
                    }
                    for channel in channels
                }
            )
        )
        (config_dir / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )


@pytest.fixture
def sagemaker_layout(tmp_path: Path) -> SageMakerLayout:
    """An empty SageMaker directory tree under ``tmp_path``."""
    base = tmp_path / "opt_ml"
    base.mkdir()
    return SageMakerLayout(base)


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: its URL and the environment that points AWS clients at it."""

    endpoint_url: str
    port: int

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def client(self, service: str) -> Any:  # boto3 clients are generated at run time
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


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


def docker_available() -> bool:
    """Whether a Docker engine answers here."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


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


def run_container_script(
    script: str, base_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``container/<script>`` as SageMaker would, on ``base_dir`` as ``/opt/ml``."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base_dir), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "container" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: Hyperparameters for a quick but real training run on ``make_interactions()``.
QUICK_HYPERPARAMETERS: dict[str, object] = {
    "model_type": "neumf",
    "epochs": 3,
    "batch_size": 256,
}


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory written by the real ``container/train`` on synthetic data.

    Session-scoped: one short training run serves every test that needs a model.
    """
    layout = SageMakerLayout(tmp_path_factory.mktemp("trained") / "opt_ml")
    layout.base_dir.mkdir()
    layout.write_channel("train", make_interactions())
    layout.write_config(QUICK_HYPERPARAMETERS)
    result = run_container_script("train", layout.base_dir)
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    return layout.model_dir
