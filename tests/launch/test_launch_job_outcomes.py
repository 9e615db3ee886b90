"""What a user sees when a job runs, fails or is stopped (issue 13 items 2 and 6).

SageMaker scenarios moto cannot play (a job that logs, then ends Failed or
Stopped) on stubbed real botocore clients (``stubbed_aws``).
"""

from __future__ import annotations

import pytest
from launch_constants import ROLE_ARN, SETTINGS
from stubbed_aws import (
    ANY,
    training_job_description,
    transform_job_description,
    tuning_job_description,
)

JOB = "ncf-train-20250101-000000-000-abcd"
TRAIN = ("train", *SETTINGS, "--train", "s3://ncf-data/train/", "--skip-role-check")


@pytest.fixture(autouse=True)
def _no_polling_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    import ncf_launch.train

    monkeypatch.setattr(ncf_launch.train, "POLL_SECONDS", 0)


def queue_training_run(
    stubbed_aws, final_status: str, reason: str | None = None, create: bool = True
) -> None:
    """Create (if ``create``), a poll in progress with two log lines, then ``final_status``."""
    sagemaker, logs = "sagemaker", "logs"
    if create:  # the SDK reads the job it created back once
        stubbed_aws.add(sagemaker, "create_training_job", {"TrainingJobArn": f"arn:x:{JOB}"})
        stubbed_aws.add(
            sagemaker, "describe_training_job", training_job_description(JOB, "InProgress")
        )
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


def test_logs_follow_streams_a_running_job_until_it_ends(stubbed_aws, ncf) -> None:
    """``ncf logs JOB --follow``: what ``ncf train`` does after the job started."""
    queue_training_run(stubbed_aws, "Completed", create=False)
    result = ncf("logs", JOB, "--follow", "--region", "us-east-1")
    assert result.code == 0, result.stderr
    assert "epoch 2/2 loss=0.35 val_hr@10=0.6120" in result.stderr
    assert result.json()["status"] == "Completed"
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


@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_role_the_sdk_check_refuses_is_one_line_naming_skip_role_check(
    stubbed_aws, ncf, command
) -> None:
    """The SDK simulates the role's policies while building the trainer (issue 13 item 6)."""
    stubbed_aws.add(
        "iam",
        "simulate_principal_policy",
        {
            "EvaluationResults": [
                {"EvalActionName": "ec2:CreateNetworkInterface", "EvalDecision": "implicitDeny"}
            ],
            "IsTruncated": False,
        },
        {"PolicySourceArn": ROLE_ARN, "ActionNames": ANY},
    )
    result = ncf(command, *SETTINGS, "--train", "s3://ncf-data/train/")
    assert result.code == 2
    (error_line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_line == (
        f"error: the SageMaker SDK's role check refused {ROLE_ARN} (Missing permissions: "
        "ec2:CreateNetworkInterface); if the role works (the check simulates permissions "
        "this job may not need), pass --skip-role-check"
    )
    assert "Traceback" not in result.stderr
    stubbed_aws.assert_done()  # nothing was created


TUNING_JOB = "ncf-tune-250101-000000-000"
TUNE = ("tune", *SETTINGS, "--train", "s3://ncf-data/train/", "--skip-role-check")


def queue_tuning_run(stubbed_aws, final_status: str, reason: str | None = None) -> None:
    """Create (the SDK reads the job back), one wait poll, then the final description."""
    stubbed_aws.add(
        "sagemaker",
        "create_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobArn": f"arn:x:{TUNING_JOB}"},
    )
    stubbed_aws.add(
        "sagemaker",
        "describe_hyper_parameter_tuning_job",
        tuning_job_description(TUNING_JOB, "InProgress"),
    )
    final = tuning_job_description(TUNING_JOB, final_status, reason)
    stubbed_aws.add("sagemaker", "describe_hyper_parameter_tuning_job", final)
    stubbed_aws.add("sagemaker", "describe_hyper_parameter_tuning_job", final)


@pytest.fixture
def _fixed_tuning_job_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import ncf_launch.tune

    monkeypatch.setattr(ncf_launch.tune, "tuning_job_name", lambda: TUNING_JOB)
    monkeypatch.setattr(ncf_launch.tune, "POLL_SECONDS", 0)


@pytest.mark.usefixtures("_fixed_tuning_job_name")
def test_a_completed_tuning_job_reports_the_best_training_job(stubbed_aws, ncf) -> None:
    queue_tuning_run(stubbed_aws, "Completed")
    result = ncf(*TUNE)
    assert result.code == 0, result.stderr
    assert f"tuning job {TUNING_JOB} started" in result.stderr
    report = result.json()
    assert report["best_training_job"] == f"{TUNING_JOB}-003-0123abcd"
    assert report["best_objective"] == 0.71
    stubbed_aws.assert_done()


@pytest.mark.parametrize(
    ("status", "reason"),
    [("Stopped", None), ("Failed", "No training job succeeded after 5 attempts: AlgorithmError")],
)
@pytest.mark.usefixtures("_fixed_tuning_job_name")
def test_a_tuning_job_that_did_not_complete_says_why_and_exits_1(
    stubbed_aws, ncf, status, reason
) -> None:
    queue_tuning_run(stubbed_aws, status, reason)
    result = ncf(*TUNE)
    assert result.code == 1
    assert result.stdout == ""
    expected = (
        f"error: tuning job {TUNING_JOB} ended {status}: {reason or 'no FailureReason given'}"
    )
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    stubbed_aws.assert_done()


BATCH = (
    "batch",
    *SETTINGS,
    "--input",
    "s3://ncf-data/in/",
    "--model-name",
    "ncf-model-x",
)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("Failed", "ClientError: See job logs: 400 from the container: no user_id in line 3"),
        ("Stopped", None),
    ],
)
def test_a_batch_job_that_did_not_complete_says_why_and_exits_1(
    stubbed_aws, ncf, monkeypatch, status, reason
) -> None:
    import ncf_launch.batch

    monkeypatch.setattr(ncf_launch.batch, "unique_name", lambda base: f"{base}-1")
    job = "ncf-batch-1"
    stubbed_aws.add("sagemaker", "create_transform_job", {"TransformJobArn": f"arn:x:{job}"})
    final = transform_job_description(job, status, reason)
    stubbed_aws.add("sagemaker", "describe_transform_job", final, {"TransformJobName": job})
    stubbed_aws.add("sagemaker", "describe_transform_job", final, {"TransformJobName": job})
    result = ncf(*BATCH)
    assert result.code == 1
    expected = f"error: transform job {job} ended {status}: {reason or 'no FailureReason given'}"
    assert expected in result.stderr
    assert "Waiter" not in result.stderr
    stubbed_aws.assert_done()
