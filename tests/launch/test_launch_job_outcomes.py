"""What a user sees when a job runs, fails or is stopped (issue 13 items 2 and 6).

SageMaker scenarios moto cannot play (a job that logs, then ends Failed or
Stopped) on stubbed real botocore clients (``stubbed_aws``).
"""

from __future__ import annotations

import pytest
from launch_constants import SETTINGS
from stubbed_aws import training_job_description

JOB = "ncf-train-20250101-000000-000-abcd"
TRAIN = ("train", *SETTINGS, "--train", "s3://ncf-data/train/", "--skip-role-check")


@pytest.fixture(autouse=True)
def _no_polling_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    import ncf_launch.train

    monkeypatch.setattr(ncf_launch.train, "POLL_SECONDS", 0)


def queue_training_run(stubbed_aws, final_status: str, reason: str | None = None) -> None:
    """Create, one poll in progress with two log lines, then ``final_status``."""
    sagemaker, logs = "sagemaker", "logs"
    stubbed_aws.add(sagemaker, "create_training_job", {"TrainingJobArn": f"arn:x:{JOB}"})
    stubbed_aws.add(sagemaker, "describe_training_job", training_job_description(JOB, "InProgress"))
    stubbed_aws.add(sagemaker, "describe_training_job", training_job_description(JOB, "InProgress"))
    stubbed_aws.add(sagemaker, "describe_training_job", training_job_description(JOB, "InProgress"))
    stubbed_aws.add(
        logs,
        "describe_log_streams",
        {"logStreams": [{"logStreamName": f"{JOB}/algo-1-1700000000"}]},
        {
            "logGroupName": "/aws/sagemaker/TrainingJobs",
            "logStreamNamePrefix": f"{JOB}/",
            "orderBy": "LogStreamName",
        },
    )
    events = [
        {"timestamp": 1, "ingestionTime": 1, "message": "epoch 1/2 loss=0.41 val_hr@10=0.5512"},
        {"timestamp": 2, "ingestionTime": 2, "message": "epoch 2/2 loss=0.35 val_hr@10=0.6120"},
    ]
    stubbed_aws.add(logs, "get_log_events", {"events": events, "nextForwardToken": "f/1"})
    stubbed_aws.add(logs, "get_log_events", {"events": [], "nextForwardToken": "f/1"})
    final = training_job_description(JOB, final_status, reason)
    stubbed_aws.add(sagemaker, "describe_training_job", final)
    stubbed_aws.add(logs, "get_log_events", {"events": [], "nextForwardToken": "f/1"})
    stubbed_aws.add(sagemaker, "describe_training_job", final)


def test_training_logs_and_job_name_are_shown(stubbed_aws, ncf) -> None:
    queue_training_run(stubbed_aws, "Completed")
    result = ncf(*TRAIN)
    assert result.code == 0, result.stderr
    assert f"training job {JOB} started" in result.stderr
    assert "epoch 2/2 loss=0.35 val_hr@10=0.6120" in result.stderr
    assert result.json()["final_metrics"] == {"validation:hr": 0.7}
    stubbed_aws.assert_done()


def test_a_failed_training_job_says_why_and_exits_1(stubbed_aws, ncf) -> None:
    reason = "AlgorithmError: Bad data: no user_id column in channel train"
    queue_training_run(stubbed_aws, "Failed", reason)
    result = ncf(*TRAIN)
    assert result.code == 1
    assert f"error: training job {JOB} ended Failed: {reason}" in result.stderr
    assert "Traceback" not in result.stderr
    stubbed_aws.assert_done()


def test_a_stopped_training_job_exits_1(stubbed_aws, ncf) -> None:
    queue_training_run(stubbed_aws, "Stopped")
    result = ncf(*TRAIN)
    assert result.code == 1
    assert f"training job {JOB} ended Stopped" in result.stderr
    stubbed_aws.assert_done()
