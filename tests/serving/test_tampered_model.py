"""Tampered but well-formed model files: the real app refuses them at load (issue 17 item 6).

Each case rewrites one file of a valid model directory with a value that still parses
(NaN vectors, seen-item indices out of range or negative) or removes one file. The app
is built exactly as a gunicorn worker builds it (``create_app_from_settings``, which
loads the model): ``/ping`` must answer 503 naming the file, the log must name it too,
and ``/invocations`` must answer 503, never a 500 or silently wrong scores.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import serving_support

from inference.app import create_app_from_settings
from inference.settings import ServingSettings

random_model_dir = serving_support.random_model_dir  # the shared fixture, under its own name


def _rewrite_npz(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name].copy() for name in stored.files}
    change(arrays)
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _nan_item_vector(arrays: dict[str, np.ndarray]) -> None:
    arrays["gmf_item_embedding"][3] = np.nan


def _infinite_user_vector(arrays: dict[str, np.ndarray]) -> None:
    arrays["mlp_user_embedding"][0, 0] = np.inf


def _nan_output_bias(arrays: dict[str, np.ndarray]) -> None:
    arrays["output_bias"][0] = np.nan


def _seen_index_out_of_range(arrays: dict[str, np.ndarray]) -> None:
    arrays["indices"][0] = 25 + 7  # the model has 25 items


def _negative_seen_index(arrays: dict[str, np.ndarray]) -> None:
    arrays["indices"][0] = -1


TAMPERINGS = {
    "nan item vector": ("weights.npz", _nan_item_vector, "gmf_item_embedding"),
    "infinite user vector": ("weights.npz", _infinite_user_vector, "mlp_user_embedding"),
    "nan output bias": ("weights.npz", _nan_output_bias, "output_bias"),
    "seen index out of range": ("seen.npz", _seen_index_out_of_range, "[0, 25)"),
    "negative seen index": ("seen.npz", _negative_seen_index, "[0, 25)"),
    "users.parquet missing": ("users.parquet", None, "missing"),
}
REQUESTS = [
    {"user_id": "u1", "k": 3},
    {"user_id": "u1", "item_ids": ["i1", "i2"]},
    {"item_id": "i1", "k": 3},
]


@pytest.mark.parametrize("case", list(TAMPERINGS))
def test_tampered_model_fails_ping_naming_the_file_and_never_500s(
    case: str, random_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file_name, change, detail = TAMPERINGS[case]
    model_dir = tmp_path / "model"
    shutil.copytree(random_model_dir, model_dir)
    if change is None:
        (model_dir / file_name).unlink()
    else:
        _rewrite_npz(model_dir / file_name, change)

    with caplog.at_level(logging.ERROR, logger="inference"):
        client = create_app_from_settings(ServingSettings(model_dir=model_dir)).test_client()
    ping = client.get("/ping")
    assert ping.status_code == 503
    error = ping.get_json()["error"]
    assert file_name in error and detail in error, error
    assert "None" not in error
    assert file_name in caplog.text
    for instance in REQUESTS:
        response = client.post("/invocations", json=instance)
        assert response.status_code == 503, response.data
        assert response.get_json()["error"] == error


def test_untampered_copy_loads(random_model_dir: Path, tmp_path: Path) -> None:
    # The cases above start from this copy: it must be healthy, or they prove nothing.
    shutil.copytree(random_model_dir, tmp_path / "model")
    client = create_app_from_settings(ServingSettings(model_dir=tmp_path / "model")).test_client()
    assert client.get("/ping").status_code == 200
    for instance in REQUESTS:
        assert client.post("/invocations", json=instance).status_code == 200
