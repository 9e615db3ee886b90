"""End to end: the real ``train`` fits ials and ease, the real ``serve`` answers from the model.

Also the EASE size guard through the real ``train``: the job fails with the
guard's message as its FailureReason and writes no model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from ncf_test_support import SageMakerLayout, run_container_script
from serving_support import start_server, stop, wait_for_ping

from training.synthetic import make_interactions

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "hyperparameters",
    [
        {"model_type": "ease", "ease_l2": 20.0},
        {"model_type": "ials", "ials_factors": 8, "ials_regularization": 5.0},
        {"model_type": "blend", "ease_l2": 20.0, "ials_factors": 8, "ials_iterations": 4},
    ],
    ids=["ease", "ials", "blend"],
)
def test_train_then_serve(tmp_path: Path, hyperparameters: dict[str, object]) -> None:
    layout = SageMakerLayout(tmp_path / "opt_ml")
    layout.base_dir.mkdir()
    layout.write_channel("train", make_interactions())
    layout.write_config(hyperparameters)
    trained = run_container_script("train", layout.base_dir)
    assert trained.returncode == 0, f"{trained.stdout[-3000:]}\n{trained.stderr[-3000:]}"
    assert "final best_epoch=" in trained.stdout
    assert not layout.failure_file.exists()
    assert (layout.output_data_dir / "metrics.json").is_file()

    server = start_server(layout.base_dir, tmp_path / "serve.log")
    try:
        wait_for_ping(server)
        answer = requests.post(
            f"{server.url}/invocations",
            json={"instances": [{"user_id": "u3", "k": 5}, {"history": ["i1", "i5"], "k": 5}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        by_user, by_history = answer.json()["predictions"]
        assert len(by_user["items"]) == 5 and "fallback" not in by_user
        assert by_history["from"] == "history" and len(by_history["items"]) == 5
        similar = requests.post(
            f"{server.url}/invocations", json={"item_id": "i1", "k": 3}, timeout=30
        )
        assert similar.status_code == 200 and len(similar.json()["predictions"][0]["items"]) == 3
    finally:
        stop(server)


def test_an_oversized_catalog_fails_the_ease_job_with_the_limit(tmp_path: Path) -> None:
    layout = SageMakerLayout(tmp_path / "opt_ml")
    layout.base_dir.mkdir()
    layout.write_channel("train", make_interactions())  # 120 items
    layout.write_config({"model_type": "ease", "ease_max_items": 100})
    trained = run_container_script("train", layout.base_dir)
    assert trained.returncode == 1
    reason = layout.failure_file.read_text().splitlines()[0]
    assert "ease_max_items=100" in reason and "120 items" in reason
    assert "model_type=ials" in reason and "model_type=gmf" in reason
    assert not (layout.model_dir / "metadata.json").exists()
