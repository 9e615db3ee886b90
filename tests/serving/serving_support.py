"""Helpers for the serving tests: random model weights in the real file format, free ports,
and the real ``serve`` program (nginx and gunicorn) started as a process.

Test modules import the fixtures below from this module by its unique name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from ncf_test_support import PROGRAMS, REPO_ROOT, free_port

from ncf_contract.model_dir import (
    ModelArtifacts,
    ModelMetadata,
    load_model_dir,
    save_model_dir,
)
from ncf_contract.seen import SeenItems

__all__ = ["PROGRAMS", "REPO_ROOT", "free_port"]  # re-exported for the serving tests


def random_artifacts(
    model_type: str = "neumf",
    num_users: int = 30,
    num_items: int = 25,
    gmf_dim: int = 4,
    mlp_dim: int = 6,
    layers: tuple[int, ...] = (8, 4),
    output_activation: str = "sigmoid",
    seed: int = 0,
) -> ModelArtifacts:
    """Artifacts of ``model_type`` with random weights; users ``u0..`` and items ``i0..``.

    Each user has seen 0..5 random items; item popularity is random.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    head = 0
    if model_type in ("gmf", "neumf"):
        weights["gmf_user_embedding"] = rng.normal(scale=0.5, size=(num_users, gmf_dim)).astype(
            np.float32
        )
        weights["gmf_item_embedding"] = rng.normal(scale=0.5, size=(num_items, gmf_dim)).astype(
            np.float32
        )
        head += gmf_dim
    num_layers = 0
    if model_type in ("mlp", "neumf"):
        weights["mlp_user_embedding"] = rng.normal(scale=0.5, size=(num_users, mlp_dim)).astype(
            np.float32
        )
        weights["mlp_item_embedding"] = rng.normal(scale=0.5, size=(num_items, mlp_dim)).astype(
            np.float32
        )
        width = 2 * mlp_dim
        for layer, units in enumerate(layers):
            weights[f"mlp_kernel_{layer}"] = rng.normal(scale=0.5, size=(width, units)).astype(
                np.float32
            )
            weights[f"mlp_bias_{layer}"] = rng.normal(scale=0.5, size=units).astype(np.float32)
            width = units
        head += width
        num_layers = len(layers)
    weights["output_kernel"] = rng.normal(scale=0.5, size=(head, 1)).astype(np.float32)
    weights["output_bias"] = rng.normal(scale=0.5, size=1).astype(np.float32)
    seen_counts = rng.integers(0, 6, size=num_users)
    seen_indices = np.concatenate(
        [rng.choice(num_items, size=count, replace=False) for count in seen_counts]
    ).astype(np.int32)
    return ModelArtifacts(
        metadata=ModelMetadata(
            model_type=model_type,
            feedback="implicit" if output_activation == "sigmoid" else "explicit",
            output_activation=output_activation,
            num_mlp_layers=num_layers,
        ),
        weights=weights,
        user_ids=np.array([f"u{n}" for n in range(num_users)]),
        item_ids=np.array([f"i{n}" for n in range(num_items)]),
        item_popularity=rng.integers(0, 100, size=num_items).astype(np.int64),
        seen=SeenItems.from_csr(
            np.concatenate([[0], np.cumsum(seen_counts)]), seen_indices, num_items
        ),
    )


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


def require_nginx() -> None:
    """Fail (not skip) with the install hint when nginx is missing: ``serve`` cannot run."""
    from inference.proxy import ProxyUnavailableError, find_nginx

    try:
        find_nginx()
    except ProxyUnavailableError as error:
        pytest.fail(f"{error} (.ci/run installs it with apt-get)")


@dataclass
class Server:
    """A ``serve`` process, its URL and port, and its log file."""

    process: subprocess.Popen[str]
    url: str
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


def start_server(base_dir: Path, log_path: Path, port: int | None = None, **env: str) -> Server:
    require_nginx()
    port = port or free_port()
    log_file = log_path.open("w")
    process = subprocess.Popen(
        PROGRAMS["serve"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "SAGEMAKER_BASE_DIR": str(base_dir),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
            **env,
        },
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Server(process, f"http://127.0.0.1:{port}", port, log_path)


def wait_for_ping(server: Server, status: int = 200, timeout: float = 90) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert server.process.poll() is None, f"server exited:\n{server.log()}"
        try:
            if requests.get(f"{server.url}/ping", timeout=2).status_code == status:
                return time.monotonic() - started
        except requests.RequestException:  # not listening yet, or workers still booting
            pass
        time.sleep(0.1)
    raise AssertionError(f"/ping never answered {status}:\n{server.log()}")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
