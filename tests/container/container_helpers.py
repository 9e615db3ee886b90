"""Helpers for the image tests: ``docker`` calls, a served container, a training run.

The image is built from the repository's Dockerfile on ``NCF_BASE_IMAGE`` (default
``local/python:3.11``, which ``../shared/tools/docker-here`` makes) and tagged
``NCF_TEST_IMAGE`` (default ``ncf-sagemaker:test``, the tag the launch tests reuse).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ncf_test_support import SageMakerLayout

TEST_IMAGE = os.environ.get("NCF_TEST_IMAGE", "ncf-sagemaker:test")
BASE_IMAGE = os.environ.get("NCF_BASE_IMAGE", "local/python:3.11")
#: Small but real training settings: enough to write every artifact, fast in a container.
CONTAINER_HYPERPARAMETERS: dict[str, object] = {"model_type": "neumf", "epochs": 2, "tuning": "off"}


def docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS`` and capture its output; never raises on a non-zero exit."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A command's exit code and output, for an assertion message."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def run_container(
    image: str,
    command: str,
    base_dir: Path,
    env: dict[str, str] | None = None,
    network_host: bool = False,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm -v BASE_DIR:/opt/ml IMAGE COMMAND``, as SageMaker runs a job."""
    options = ["--rm", "-v", f"{base_dir}:/opt/ml"]
    if network_host:
        options.append("--network=host")
    for name, value in (env or {}).items():
        options += ["-e", f"{name}={value}"]
    return docker("run", *options, image, command, timeout=timeout)


@dataclass(frozen=True)
class Server:
    """A detached ``serve`` container and the host URL of its published port."""

    name: str
    url: str

    def logs(self) -> str:
        result = docker("logs", self.name)
        return result.stdout + result.stderr


#: The ``start_server`` fixture: ``start(image, model_dir) -> Server``.
StartServer = Callable[[str, Path], Server]


def wait_for_ping(server: Server, timeout: float = 60) -> float:
    """Poll ``GET /ping`` until it answers 200; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"/ping not 200 within {timeout} s; logs:\n{server.logs()}")


@dataclass(frozen=True)
class TrainingRun:
    """One ``docker run IMAGE train``: its ``/opt/ml`` layout and the finished process."""

    layout: SageMakerLayout
    result: subprocess.CompletedProcess[str]
