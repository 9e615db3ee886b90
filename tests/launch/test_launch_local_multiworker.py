"""SageMaker local mode with two instances: two containers of the real image train one model.

The SDK's local mode starts one container per host (``algo-1``, ``algo-2``) on one
docker compose network, so the hosts resolve and ``TF_CONFIG`` is built exactly
as on SageMaker (port 8890). The data is tiny to fit CI's time budget.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest
from local_mode import train_locally

from training.synthetic import make_interactions

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_two_local_instances_train_together_and_write_one_model(
    tmp_path: Path, test_image: str
) -> None:
    train_dir = tmp_path / "data" / "train"
    train_dir.mkdir(parents=True)
    make_interactions(num_users=120, num_items=60, interactions_per_user=10).to_csv(
        train_dir / "interactions.csv", index=False
    )
    output_dir = tmp_path / "output"
    trained = train_locally(
        test_image,
        train_dir,
        output_dir,
        "--instance-count",
        "2",
        *("--hp", "epochs=2", "--hp", "batch_size=64", "--hp", "gmf_dim=8"),
        *("--hp", "full_ranking=false", "--hp", "tuning=off", "--hp", "refit=false"),
    )
    assert trained.returncode == 0, trained.stderr[-6000:]
    report = json.loads(trained.stdout)
    assert report["status"] == "Completed"
    logs = trained.stderr
    # Both containers joined one MultiWorkerMirroredStrategy and trained their own users.
    assert "worker 0 of 2 trains on" in logs and "worker 1 of 2 trains on" in logs
    assert "2 replicas: global batch 128" in logs
    # Local mode names the hosts algo-1-<suffix>, algo-2-<suffix>.
    assert re.search(r"host algo-2\S* is done; the chief algo-1\S* writes the model", logs)
    with tarfile.open(output_dir / "model.tar.gz") as archive:
        names = archive.getnames()
        assert "metadata.json" in names
        metadata = json.load(archive.extractfile("metadata.json"))  # type: ignore[arg-type]
    assert metadata["data"]["num_users"] == 120
    # One chief's metric lines per epoch, not two copies.
    assert sum("epoch=1 train_loss=" in line for line in logs.splitlines()) == 1
