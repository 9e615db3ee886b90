"""Local-mode plumbing with a probe image that records what SageMaker local mode gave it.

Fast (seconds per run) and independent of the real training code: the SDK's
local mode must write the three ``/opt/ml/input/config`` files, mount each
channel (a folder, a ``file://`` URI, or ``s3://`` on a moto server), pass
``train``/``serve`` as the argument, and the launch scripts must turn a failed
job into its ``output/failure`` line and leave no containers behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from launch_constants import PROGRAMS, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROBE_IMAGE = "ncf-launch-probe:test"


@pytest.fixture(scope="session")
def probe_image() -> str:
    base = os.environ.get("NCF_BASE_IMAGE", "local/python:3.11")
    subprocess.run(
        ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", PROBE_IMAGE, "."],
        cwd=Path(__file__).parent / "probe_image",
        capture_output=True,
        check=True,
        timeout=600,
    )
    return PROBE_IMAGE


def ncf_script(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PROGRAMS["ncf"], *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "AWS_REGION": "us-east-1", **(env or {})},
    )


def probe_containers() -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"ancestor={PROBE_IMAGE}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def model_metadata(output_dir: Path) -> dict[str, Any]:
    with tarfile.open(output_dir / "model.tar.gz") as archive:
        handle = archive.extractfile("metadata.json")
        assert handle is not None
        return json.loads(handle.read())


def test_local_train_writes_the_sagemaker_files_and_mounts_channels(tmp_path, probe_image) -> None:
    train = tmp_path / "train"
    (train / "2024").mkdir(parents=True)
    (train / "2024" / "part-0.csv").write_text("user_id,item_id\nu1,i1\n")
    validation = tmp_path / "validation"
    validation.mkdir()
    (validation / "v.csv").write_text("user_id,item_id\nu1,i2\n")
    output = tmp_path / "out"
    result = ncf_script(
        "train",
        "--local",
        "--image-uri",
        probe_image,
        "--train",
        str(train),
        "--validation",
        f"file://{validation}",
        "--output-path",
        f"file://{output}",
        "--hp",
        "epochs=3",
        "--hp",
        "mlp_layers=[64,32]",
        "--hp",
        "model_type=gmf",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["status"] == "Completed"
    metadata = model_metadata(output)
    assert metadata["argv"] == ["train"]
    config = metadata["config"]
    assert config["hyperparameters"] == {
        "epochs": "3",
        "mlp_layers": "[64, 32]",
        "model_type": "gmf",
    }
    assert set(config["inputdataconfig"]) == {"train", "validation"}
    assert config["inputdataconfig"]["train"]["TrainingInputMode"] == "File"
    assert config["resourceconfig"]["hosts"] == [config["resourceconfig"]["current_host"]]
    assert metadata["channels"] == {"train": ["2024/part-0.csv"], "validation": ["v.csv"]}
    assert "val_hr@10=0.7" in result.stderr  # the container log streams through
    assert probe_containers() == []


def test_local_train_reads_s3_from_a_moto_server(tmp_path, probe_image, aws_env) -> None:
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="ncf-local-s3")
    s3.put_object(Bucket="ncf-local-s3", Key="data/train/part-0.csv", Body=b"user_id,item_id\n")
    output = tmp_path / "out"
    result = ncf_script(
        "train",
        "--local",
        "--image-uri",
        probe_image,
        "--train",
        "s3://ncf-local-s3/data/train/",
        "--output-path",
        f"file://{output}",
        env=aws_env.env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert model_metadata(output)["channels"] == {"train": ["part-0.csv"]}


def test_local_train_failure_says_why(tmp_path, probe_image) -> None:
    train = tmp_path / "train"
    train.mkdir()
    (train / "x.csv").write_text("a,b\n1,2\n")
    result = ncf_script(
        "train",
        "--local",
        "--image-uri",
        probe_image,
        "--train",
        str(train),
        "--output-path",
        f"file://{tmp_path / 'out'}",
        "--hp",
        "fail=true",
    )
    assert result.returncode == 2
    assert "failed: Bad data: no user_id column in channel train" in result.stderr
    assert probe_containers() == []


def test_local_deploy_passes_the_serving_environment(tmp_path, probe_image) -> None:
    from ncf_launch.local import run_local_deploy, stop_local_endpoint
    from ncf_launch.options import DeployOptions
    from ncf_launch.settings import Settings

    # A model.tar.gz as training leaves it (no training needed to test serving).
    output = tmp_path / "out"
    output.mkdir()
    (tmp_path / "metadata.json").write_text(json.dumps({"channels": {"train": ["x.csv"]}}))
    with tarfile.open(output / "model.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "metadata.json", arcname="metadata.json")
    port = free_port()
    session, names = run_local_deploy(
        Settings(image_uri=probe_image, local=True),
        DeployOptions(
            endpoint_name="ncf-probe",
            model_data=f"file://{output}/model.tar.gz",
            workers=3,
            timeout_s=20,
            instance_type="local",
        ),
        port=port,
        container_root=tmp_path / "serving",
    )
    try:
        invoked = ncf_script("invoke", "--local", "--port", str(port), "--user-id", "7", "--json")
        assert invoked.returncode == 0, invoked.stderr
        (prediction,) = json.loads(invoked.stdout)["predictions"]
        assert prediction["env"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "3"
        assert prediction["env"]["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "20"
        assert prediction["model"]["channels"] == {"train": ["x.csv"]}
    finally:
        stop_local_endpoint(session, names)
    assert probe_containers() == []
