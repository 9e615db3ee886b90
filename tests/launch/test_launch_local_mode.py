"""SageMaker local mode end to end on Docker: train, deploy, invoke, clean up — with our image.

The SDK's local mode writes ``/opt/ml/input/config/*.json``, mounts the channel,
runs the image with ``train`` under docker compose and packs ``model.tar.gz``;
then it extracts that into ``/opt/ml/model`` and runs the image with ``serve``.
One short training on the small synthetic log keeps it lean.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from launch_constants import free_port
from local_mode import ncf_local, train_locally
from ncf_launch.local import run_local_deploy, stop_local_endpoint
from ncf_launch.options import DeployOptions
from ncf_launch.settings import Settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_train_deploy_invoke_cleanup_locally(tmp_path: Path, interactions, test_image) -> None:
    train_dir = tmp_path / "data" / "train"
    train_dir.mkdir(parents=True)
    interactions.to_csv(train_dir / "interactions.csv", index=False)
    output_dir = tmp_path / "output"

    trained = train_locally(
        test_image,
        train_dir,
        output_dir,
        "--hp",
        "epochs=2",
        "--hp",
        "model_type=neumf",
        "--hp",
        "batch_size=256",
        "--hp",
        "tuning=off",
    )
    assert trained.returncode == 0, trained.stderr[-4000:]
    report = json.loads(trained.stdout)
    assert report["status"] == "Completed"
    artifact = output_dir / "model.tar.gz"
    assert report["model_artifact"] == f"file://{artifact}"
    with tarfile.open(artifact) as archive:
        assert "metadata.json" in archive.getnames()
    assert "val_hr@" in trained.stderr  # the metric lines streamed from the container

    port = free_port()
    settings = Settings(image_uri=test_image, local=True, region="us-east-1")
    session, names = run_local_deploy(
        settings,
        DeployOptions(
            endpoint_name="ncf-local-test",
            model_data=report["model_artifact"],
            instance_type="local",
        ),
        port=port,
        container_root=tmp_path / "serving",
    )
    try:
        assert names["status"] == "InService"
        user = str(interactions["user_id"].iloc[0])
        invoked = ncf_local(
            "invoke",
            "--local",
            "--port",
            str(port),
            "--user-id",
            user,
            "--k",
            "5",
            "--json",
            timeout=120,
        )
        assert invoked.returncode == 0, invoked.stderr
        (prediction,) = json.loads(invoked.stdout)["predictions"]
        items = [item["item_id"] for item in prediction["items"]]
        assert len(items) == 5
        assert set(items) <= set(interactions["item_id"].astype(str))
        seen = set(interactions.loc[interactions["user_id"] == user, "item_id"].astype(str))
        assert not set(items) & seen  # seen items are excluded by default
        scores = [item["score"] for item in prediction["items"]]
        assert scores == sorted(scores, reverse=True)
        readable = ncf_local(
            "invoke", "--local", "--port", str(port), "--user-id", user, timeout=120
        )
        assert readable.returncode == 0 and f"user {user}" in readable.stdout
    finally:
        stop_local_endpoint(session, names)
    left = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"ancestor={test_image}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not [name for name in left if "algo-1" in name]
