"""Request details SageMaker's API enforces that moto does not (issue 13 items 4, 5, 8, 10)."""

from __future__ import annotations

import pytest
from launch_constants import SETTINGS
from ncf_launch.options import DeployOptions
from stubbed_aws import ANY, endpoint_description
from test_launch_dry_run import request_of

TUNE = ("tune", *SETTINGS, "--dry-run", "--train", "s3://ncf-data/train/", "--skip-role-check")
DEPLOY = ("deploy", *SETTINGS, "--model-data", "s3://ncf-data/m/model.tar.gz")


def test_hyperband_tuning_turns_early_stopping_off(ncf, no_credentials) -> None:
    sent = request_of(ncf(*TUNE, "--strategy", "Hyperband").json(), "CreateHyperParameterTuningJob")
    config = sent["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Hyperband"
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    bayesian = request_of(ncf(*TUNE).json(), "CreateHyperParameterTuningJob")
    assert bayesian["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] == "Auto"


def test_explicit_feedback_tunes_on_rmse(ncf, no_credentials) -> None:
    sent = request_of(
        ncf(*TUNE, "--hp", "feedback=explicit").json(), "CreateHyperParameterTuningJob"
    )
    objective = sent["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Minimize", "MetricName": "validation:rmse"}


def test_spot_tuning_trials_share_no_checkpoint_prefix(ncf, no_credentials) -> None:
    sent = request_of(ncf(*TUNE, "--spot").json(), "CreateHyperParameterTuningJob")
    assert sent["TrainingJobDefinition"]["EnableManagedSpotTraining"] is True
    assert "CheckpointConfig" not in sent["TrainingJobDefinition"]
    refused = ncf(*TUNE, "--spot", "--checkpoint-s3-uri", "s3://ncf-data/ckpt/")
    assert refused.code == 2 and "every trial would resume" in refused.stderr


def test_the_default_autoscaling_target_fits_what_an_instance_serves() -> None:
    # One instance serves ~1,800 req/s (BENCHMARKS.md); 100/min (1.7 req/s) never scaled in.
    assert DeployOptions.autoscale_target >= 60 * 50


@pytest.mark.parametrize("seconds", ["59", "3601"])
def test_startup_health_check_timeout_range_is_checked(ncf, no_credentials, seconds) -> None:
    result = ncf(*DEPLOY, "--dry-run", "--startup-health-check-timeout", seconds)
    assert result.code == 2 and "must be 60-3600 seconds" in result.stderr


def test_batch_payload_times_concurrency_is_checked(ncf, no_credentials) -> None:
    result = ncf(
        "batch",
        *SETTINGS,
        "--dry-run",
        "--input",
        "s3://ncf-data/in/",
        "--model-data",
        "s3://ncf-data/m.tar.gz",
        "--max-payload",
        "20",
        "--max-concurrent-transforms",
        "8",
    )
    assert result.code == 2 and "over SageMaker's 100 MB limit" in result.stderr


def test_an_update_keeps_the_running_instance_count(stubbed_aws, ncf) -> None:
    """A scaled-out endpoint (4 instances) keeps them: RetainAllVariantProperties."""
    stubbed_aws.add(
        "sagemaker",
        "create_model",
        {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"},
    )
    stubbed_aws.add(
        "sagemaker",
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"},
    )
    stubbed_aws.add(
        "sagemaker",
        "describe_endpoint",
        endpoint_description("ncf-endpoint", "InService", "old-config", instance_count=4),
    )
    stubbed_aws.add("application-autoscaling", "describe_scalable_targets", {"ScalableTargets": []})
    stubbed_aws.add(
        "sagemaker",
        "update_endpoint",
        {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"},
        {
            "EndpointName": "ncf-endpoint",
            "EndpointConfigName": ANY,
            "RetainAllVariantProperties": True,
        },
    )
    result = ncf(*DEPLOY, "--no-wait")
    assert result.code == 0, result.stderr
    assert result.json()["action"] == "update"
    stubbed_aws.assert_done()
