"""Request details SageMaker's API enforces that moto does not (issue 13 items 4, 5, 8, 10)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from dry_run_requests import request_of
from launch_constants import ACCOUNT, BUCKET, SETTINGS
from ncf_launch.options import DeployOptions
from ncf_launch.tune import OUTSIDE_RESUME_KEY
from stubbed_aws import ANY, endpoint_description, training_job_description

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


def test_spot_tuning_checkpoints_under_its_own_tuning_job(ncf, no_credentials) -> None:
    """Trials of one tuning job share its prefix; no other run (earlier tuning jobs) does."""
    sent = request_of(ncf(*TUNE, "--spot").json(), "CreateHyperParameterTuningJob")
    definition = sent["TrainingJobDefinition"]
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/ncf/checkpoints/{sent['HyperParameterTuningJobName']}",
        "LocalPath": "/opt/ml/checkpoints",
    }


def test_tune_takes_a_checkpoint_uri(ncf, no_credentials) -> None:
    sent = request_of(
        ncf(*TUNE, "--spot", "--checkpoint-s3-uri", "s3://ncf-data/ckpt/").json(),
        "CreateHyperParameterTuningJob",
    )
    assert sent["TrainingJobDefinition"]["CheckpointConfig"]["S3Uri"] == "s3://ncf-data/ckpt/"


@pytest.mark.parametrize("budget", OUTSIDE_RESUME_KEY)
def test_the_epoch_budget_is_not_tuned_over_a_shared_checkpoint_prefix(
    ncf, no_credentials, budget
) -> None:
    result = ncf(*TUNE, "--spot", "--range", f"{budget}=integer:2:20")
    assert result.code == 2
    assert f"--range {budget} with --spot" in result.stderr
    assert ncf(*TUNE, "--range", f"{budget}=integer:2:20").code == 0  # no checkpoints: fine


@pytest.mark.slow
def test_the_resume_key_the_launcher_relies_on_is_the_containers() -> None:
    """Every hyperparameter but ``OUTSIDE_RESUME_KEY`` changes the container's resume key.

    Sharing one checkpoint prefix among tuning trials is safe only because of this.
    """
    from types import SimpleNamespace

    from training.config import TrainingConfig
    from training.families.ncf import compatibility

    # compatibility() reads only the dataset's sizes from the objective.
    objective: Any = SimpleNamespace(
        dataset=SimpleNamespace(num_users=30, num_items=40, train=list(range(100)))
    )
    base = TrainingConfig()
    outside = set()
    for spec in dataclasses.fields(TrainingConfig):
        if spec.metadata.get("kind") == "internal":  # not a hyperparameter
            continue
        value = getattr(base, spec.name)
        other = {
            bool: lambda v: not v,
            int: lambda v: v + 1,
            float: lambda v: v + 0.25,
            str: lambda v: f"{v}-other",
            tuple: lambda v: (*v, 8),
            dict: lambda v: {**v, "other_column": "categorical"},
            type(None): lambda v: "s3://other",
        }[type(value)](value)
        changed = dataclasses.replace(base, **{spec.name: other})
        if compatibility(changed, objective) == compatibility(base, objective):
            outside.add(spec.name)
    assert outside == set(OUTSIDE_RESUME_KEY)


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
        "describe_endpoint",
        endpoint_description("ncf-endpoint", "InService", "old-config", instance_count=4),
    )
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


def test_deploy_finds_the_latest_training_job_past_tuning_trials(stubbed_aws, ncf) -> None:
    """The API filters by name: ten newer tuning trials no longer hide the latest ncf-train job."""
    latest = "ncf-train-20250102-000000-000-abcd"
    stubbed_aws.add_error(
        "sagemaker", "describe_endpoint", "ValidationException", "Could not find endpoint"
    )
    stubbed_aws.add(
        "sagemaker",
        "list_training_jobs",
        {
            "TrainingJobSummaries": [
                {
                    "TrainingJobName": name,
                    "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/{name}",
                    "CreationTime": created,
                    "TrainingJobStatus": "Completed",
                }
                for name, created in (
                    ("ncf-train-20250101-000000-000-dcba", "2025-01-01T00:00:00Z"),
                    (latest, "2025-01-02T00:00:00Z"),
                )
            ]
        },
        {
            "NameContains": "ncf-train",
            "StatusEquals": "Completed",
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 10,
        },
    )
    stubbed_aws.add(
        "sagemaker",
        "describe_training_job",
        training_job_description(latest, "Completed"),
        {"TrainingJobName": latest},
    )
    stubbed_aws.expect_model_from(f"s3://bucket/ncf/output/{latest}/model.tar.gz")
    stubbed_aws.add(
        "sagemaker",
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"},
    )
    stubbed_aws.add(
        "sagemaker",
        "create_endpoint",
        {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"},
    )
    result = ncf("deploy", *SETTINGS, "--no-wait")
    assert result.code == 0, result.stderr
    assert result.json()["model_data"] == f"s3://bucket/ncf/output/{latest}/model.tar.gz"
    stubbed_aws.assert_done()
