"""Helpers shared by every test area: paths, ports, a SageMaker layout, the S3 server handle.

Test modules import these by name (``from ncf_test_support import SageMakerLayout``);
``conftest.py`` cannot be imported that way, because every conftest module is
called ``conftest`` and the first one loaded would shadow the others.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from training.config import TrainingConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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

        Hyperparameter values are written as strings, as SageMaker does. A test job
        skips the in-job search (``tuning=off``, which has its own tests) unless the test
        sets one of the ``tuning*`` hyperparameters itself.
        """
        config_dir = self.base_dir / "input" / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        hyperparameters = dict(hyperparameters or {})
        if not any(name.startswith("tuning") for name in hyperparameters):
            hyperparameters["tuning"] = "off"
        as_strings = {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in hyperparameters.items()
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


def docker_available() -> bool:
    """Whether a Docker engine answers here."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


#: The image's programs, run from this checkout (the same as the ``train`` / ``serve`` / ``ncf``
#: console scripts the image and ``.venv`` install).
PROGRAMS: dict[str, list[str]] = {
    "train": [sys.executable, "-m", "training"],
    "serve": [sys.executable, "-m", "inference"],
    "ncf": [sys.executable, "-m", "ncf_launch"],
}


def run_container_script(
    script: str, base_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the image's ``script`` (``train`` or ``serve``) as SageMaker would, on ``base_dir``."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base_dir), **(extra_env or {})}
    return subprocess.run(
        PROGRAMS[script],
        cwd=REPO_ROOT,
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
    "tuning": "off",  # the search has its own tests
}


def single_fit_config(hyperparameters: dict[str, Any]) -> TrainingConfig:
    """A configuration that fits once, as given: no in-job search and no refit.

    For tests of one family's fit; the search and the refit have their own tests.
    """
    return TrainingConfig.from_hyperparameters({"tuning": "off", "refit": False, **hyperparameters})
