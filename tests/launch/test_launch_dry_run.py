"""``--dry-run``: each command prints the exact requests it would send, offline, changing nothing.

The printed JSON is checked against the request the command sends for real: the
same command runs once dry and once against moto (with botocore-level capture),
and the parameters of the creating calls must match except for generated names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dry_run_requests import operations, request_of
from launch_constants import BUCKET, GPU_IMAGE_URI, IMAGE_URI, SETTINGS

from ncf_contract.metric_lines import METRIC_DEFINITIONS

NAME_KEYS = {
    "TrainingJobName",
    "HyperParameterTuningJobName",
    "ModelName",
    "EndpointConfigName",
    "TransformJobName",
}


def without_generated_names(value: Any) -> Any:
    """Drop generated (timestamped) names so a dry and a real request compare equal."""
    if isinstance(value, dict):
        return {k: without_generated_names(v) for k, v in value.items() if k not in NAME_KEYS}
    if isinstance(value, list):
        return [without_generated_names(item) for item in value]
    if isinstance(value, str):  # timestamps inside generated URIs (checkpoint prefixes)
        return re.sub(r"\d{8}-\d{6}-\d{3}-[0-9a-f]{8}", "<time>", value)
    return value


def test_train_dry_run_needs_no_credentials_and_prints_the_request(no_credentials, ncf) -> None:
    result = ncf(
        "train",
        *SETTINGS,
        "--dry-run",
        "--train",
        "s3://ncf-data/train/",
        "--validation",
        "s3://ncf-data/validation/",
        "--hp",
        "epochs=3",
        "--spot",
        "--input-mode",
        "FastFile",
    )
    assert result.code == 0, result.stderr
    requests = result.json()
    assert operations(requests)[0] == "CreateTrainingJob"
    params = request_of(requests, "CreateTrainingJob")
    assert params["AlgorithmSpecification"]["TrainingImage"] == IMAGE_URI
    assert params["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert params["HyperParameters"] == {"epochs": "3"}
    assert params["EnableManagedSpotTraining"] is True
    assert params["CheckpointConfig"]["S3Uri"].startswith(
        f"s3://{BUCKET}/ncf/checkpoints/ncf-train-"
    )
    assert [c["InputMode"] for c in params["InputDataConfig"]] == ["FastFile", "FastFile"]
    assert {"Key": "project", "Value": "ncf-sagemaker"} in params["Tags"]


@pytest.mark.parametrize(
    ("command", "creating"),
    [
        (
            ("train", "--train", f"s3://{BUCKET}/data/train/", "--hp", "epochs=4", "--spot"),
            ["CreateTrainingJob"],
        ),
        (
            ("tune", "--train", f"s3://{BUCKET}/data/train/", "--max-jobs", "4"),
            ["CreateHyperParameterTuningJob"],
        ),
        (
            (
                "deploy",
                "--model-data",
                f"s3://{BUCKET}/m/model.tar.gz",
                "--workers",
                "3",
                "--endpoint-name",
                "ncf-dry",
                "--instance-type",
                "ml.g4dn.xlarge",
                "--image-uri",
                GPU_IMAGE_URI,
            ),
            ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"],
        ),
        (
            (
                "batch",
                "--input",
                f"s3://{BUCKET}/in/",
                "--model-data",
                f"s3://{BUCKET}/m.tar.gz",
                "--batch-strategy",
                "SingleRecord",
            ),
            ["CreateModel", "CreateTransformJob"],
        ),
    ],
    ids=["train", "tune", "deploy", "batch"],
)
@pytest.mark.slow
def test_dry_run_matches_what_is_sent(launch_env, ncf, captured, command, creating) -> None:
    dry = ncf(*command, "--skip-role-check", "--no-wait", "--dry-run")
    assert dry.code == 0, dry.stderr
    dry_requests = dry.json()
    real = ncf(*command, "--skip-role-check", "--no-wait")
    assert real.code == 0, real.stderr
    for operation in creating:
        assert without_generated_names(request_of(dry_requests, operation)) == (
            without_generated_names(captured.params(operation))
        ), operation
    if command[0] == "deploy":
        ncf("cleanup", "--endpoint-name", "ncf-dry")


@pytest.mark.slow
def test_dry_run_changes_nothing(launch_env, ncf) -> None:
    sagemaker = launch_env.client("sagemaker")
    before = len(sagemaker.list_models()["Models"])
    result = ncf(
        "deploy",
        "--model-data",
        f"s3://{BUCKET}/m/model.tar.gz",
        "--endpoint-name",
        "ncf-never",
        "--autoscale-min",
        "1",
        "--autoscale-max",
        "2",
        "--dry-run",
    )
    assert result.code == 0, result.stderr
    requests = result.json()
    assert operations(requests) == [
        "DescribeEndpoint",
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "RegisterScalableTarget",
        "PutScalingPolicy",
    ]
    policy = request_of(requests, "PutScalingPolicy")
    assert policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    variant = request_of(requests, "CreateEndpointConfig")["ProductionVariants"][0]
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    assert len(sagemaker.list_models()["Models"]) == before
    assert "ncf-never" not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]


def test_invoke_cleanup_and_list_dry_runs(no_credentials, ncf) -> None:
    invoke = ncf("invoke", *SETTINGS, "--dry-run", "--user-id", "42", "--k", "5")
    assert invoke.code == 0, invoke.stderr
    (call,) = invoke.json()
    assert call["service"] == "sagemaker-runtime"
    assert call["params"]["ContentType"] == "application/json"
    assert json.loads(call["params"]["Body"]) == {"user_id": "42", "k": 5}

    cleanup = ncf("cleanup", *SETTINGS, "--dry-run", "--endpoint-name", "ncf-x")
    assert cleanup.code == 0, cleanup.stderr
    assert "DeleteEndpoint" in operations(cleanup.json())

    listing = ncf("list", *SETTINGS, "--dry-run")
    assert listing.code == 0, listing.stderr
    (call,) = listing.json()
    assert call["params"]["TagFilters"] == [{"Key": "project", "Values": ["ncf-sagemaker"]}]


def test_the_script_itself_prints_parseable_json(no_credentials) -> None:
    """The installed ``ncf`` console script as a user runs it: JSON on stdout, logs on stderr."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ncf")),
            "train",
            *SETTINGS,
            "--dry-run",
            "--train",
            "s3://ncf-data/train/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert operations(json.loads(result.stdout))[0] == "CreateTrainingJob"
