"""``ncf describe``, ``ncf stop``, ``ncf logs`` and ``ncf deploy --best-of`` (issue 13).

Each runs on stubbed real botocore clients (``stubbed_aws``): the stub checks the
exact request (and botocore checks it against the service model), the test
checks what was printed. The dry runs need no credentials at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from dry_run_requests import request_of
from launch_constants import ACCOUNT, REGION, SETTINGS
from stubbed_aws import (
    endpoint_description,
    training_job_description,
    transform_job_description,
    tuning_job_description,
)

TRAINING_JOB = "ncf-train-20250101-000000-000-abcd"
TUNING_JOB = "ncf-tune-250101-000000-000"
TRIAL = f"{TUNING_JOB}-003-0123abcd"
BATCH_JOB = "ncf-batch-20250101-000000-000-abcd"
ENDPOINT = "ncf-endpoint"
REGION_ONLY = ("--region", REGION)


@pytest.mark.parametrize(
    ("name", "operation", "key", "description", "expected"),
    [
        (
            TRAINING_JOB,
            "describe_training_job",
            "TrainingJobName",
            training_job_description(TRAINING_JOB, "Completed"),
            {
                "training_job_name": TRAINING_JOB,
                "status": "Completed",
                "failure_reason": None,
                "final_metrics": {"validation:hr": 0.7},
                "model_artifact": f"s3://bucket/ncf/output/{TRAINING_JOB}/model.tar.gz",
                "billable_seconds": None,
            },
        ),
        (
            TRIAL,  # a tuning trial is a training job
            "describe_training_job",
            "TrainingJobName",
            training_job_description(TRIAL, "Failed", "AlgorithmError: loss is NaN"),
            {
                "training_job_name": TRIAL,
                "status": "Failed",
                "failure_reason": "AlgorithmError: loss is NaN",
                "final_metrics": {},
                "model_artifact": f"s3://bucket/ncf/output/{TRIAL}/model.tar.gz",
                "billable_seconds": None,
            },
        ),
        (
            TUNING_JOB,
            "describe_hyper_parameter_tuning_job",
            "HyperParameterTuningJobName",
            tuning_job_description(TUNING_JOB, "Completed"),
            {
                "tuning_job_name": TUNING_JOB,
                "status": "Completed",
                "failure_reason": None,
                "training_job_counts": {"Completed": 3, "Stopped": 1},
                "best_training_job": TRIAL,
                "best_objective": 0.71,
                "best_hyperparameters": {"learning_rate": "0.003"},
            },
        ),
        (
            BATCH_JOB,
            "describe_transform_job",
            "TransformJobName",
            transform_job_description(BATCH_JOB, "Failed", "ClientError: 400 on line 3"),
            {
                "transform_job_name": BATCH_JOB,
                "status": "Failed",
                "failure_reason": "ClientError: 400 on line 3",
                "model_name": "ncf-model-x",
                "output": None,
            },
        ),
        (
            ENDPOINT,
            "describe_endpoint",
            "EndpointName",
            endpoint_description(ENDPOINT, "Failed", "cfg", 2, reason="ping failed"),
            {
                "endpoint_name": ENDPOINT,
                "status": "Failed",
                "failure_reason": "ping failed",
                "endpoint_config_name": "cfg",
                "variants": [
                    {
                        "variant_name": "AllTraffic",
                        "current_instance_count": 2,
                        "desired_instance_count": 2,
                    }
                ],
            },
        ),
    ],
    ids=["training", "trial", "tuning", "batch", "endpoint"],
)
def test_describe_prints_status_metrics_and_failure_reason(
    stubbed_aws, ncf, name, operation, key, description, expected
) -> None:
    stubbed_aws.add("sagemaker", operation, description, {key: name})
    result = ncf("describe", name, *REGION_ONLY)
    assert result.code == 0, result.stderr
    assert result.json() == expected
    stubbed_aws.assert_done()


def test_describe_kind_overrides_the_naming(stubbed_aws, ncf) -> None:
    stubbed_aws.add(
        "sagemaker",
        "describe_training_job",
        training_job_description("my-own-job", "Stopped"),
        {"TrainingJobName": "my-own-job"},
    )
    result = ncf("describe", "my-own-job", "--kind", "training", *REGION_ONLY)
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "Stopped"
    stubbed_aws.assert_done()


@pytest.mark.parametrize(
    ("name", "operation", "params", "kind"),
    [
        (TRAINING_JOB, "stop_training_job", {"TrainingJobName": TRAINING_JOB}, "training"),
        (TRIAL, "stop_training_job", {"TrainingJobName": TRIAL}, "training"),
        (
            TUNING_JOB,
            "stop_hyper_parameter_tuning_job",
            {"HyperParameterTuningJobName": TUNING_JOB},
            "tuning",
        ),
        (BATCH_JOB, "stop_transform_job", {"TransformJobName": BATCH_JOB}, "batch"),
    ],
    ids=["training", "trial", "tuning", "batch"],
)
def test_stop_sends_the_stop_call_of_the_jobs_kind(
    stubbed_aws, ncf, name, operation, params, kind
) -> None:
    stubbed_aws.add("sagemaker", operation, {}, params)
    result = ncf("stop", name, *REGION_ONLY)
    assert result.code == 0, result.stderr
    assert result.json() == {"stopping": name, "kind": kind}
    stubbed_aws.assert_done()


def test_stop_refuses_an_endpoint_name_without_a_call(stubbed_aws, ncf) -> None:
    result = ncf("stop", ENDPOINT, *REGION_ONLY)
    assert result.code == 2
    assert "stop takes training, tuning, batch" in result.stderr
    assert "--kind" in result.stderr
    stubbed_aws.assert_done()


def test_logs_print_every_stream_in_order_with_its_host(stubbed_aws, ncf) -> None:
    group = "/aws/sagemaker/TrainingJobs"
    streams = [f"{TRAINING_JOB}/algo-1-1700000000", f"{TRAINING_JOB}/algo-2-1700000000"]
    stubbed_aws.add(
        "logs",
        "describe_log_streams",
        {"logStreams": [{"logStreamName": name} for name in streams]},
        {
            "logGroupName": group,
            "logStreamNamePrefix": f"{TRAINING_JOB}/",
            "orderBy": "LogStreamName",
        },
    )

    def events(*messages: str) -> list[dict[str, Any]]:
        return [{"timestamp": 1, "ingestionTime": 1, "message": m} for m in messages]

    first = {"logGroupName": group, "logStreamName": streams[0], "startFromHead": True}
    stubbed_aws.add(
        "logs",
        "get_log_events",
        {"events": events("epoch 1", "epoch 2"), "nextForwardToken": "f/1"},
        first,
    )
    stubbed_aws.add(
        "logs",
        "get_log_events",
        {"events": events("done"), "nextForwardToken": "f/2"},
        {**first, "nextToken": "f/1"},
    )
    stubbed_aws.add(
        "logs",
        "get_log_events",
        {"events": [], "nextForwardToken": "f/2"},
        {**first, "nextToken": "f/2"},
    )
    second = {"logGroupName": group, "logStreamName": streams[1], "startFromHead": True}
    stubbed_aws.add(
        "logs",
        "get_log_events",
        {"events": events("worker ready"), "nextForwardToken": "g/1"},
        second,
    )
    stubbed_aws.add(
        "logs",
        "get_log_events",
        {"events": [], "nextForwardToken": "g/1"},
        {**second, "nextToken": "g/1"},
    )
    result = ncf("logs", TRAINING_JOB, *REGION_ONLY)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[algo-1-1700000000] epoch 1",
        "[algo-1-1700000000] epoch 2",
        "[algo-1-1700000000] done",
        "[algo-2-1700000000] worker ready",
    ]
    stubbed_aws.assert_done()


def test_logs_of_an_endpoint_and_of_a_job_without_logs(stubbed_aws, ncf) -> None:
    stubbed_aws.add(
        "logs",
        "describe_log_streams",
        {"logStreams": [{"logStreamName": "AllTraffic/i-0123"}]},
        {"logGroupName": f"/aws/sagemaker/Endpoints/{ENDPOINT}", "orderBy": "LogStreamName"},
    )
    stubbed_aws.add("logs", "get_log_events", {"events": [], "nextForwardToken": "f/1"})
    endpoint = ncf("logs", ENDPOINT, *REGION_ONLY)
    assert (endpoint.code, endpoint.stdout) == (0, "")  # a stream without lines yet
    stubbed_aws.add(
        "logs",
        "describe_log_streams",
        {"logStreams": []},
        {
            "logGroupName": "/aws/sagemaker/TransformJobs",
            "logStreamNamePrefix": f"{BATCH_JOB}/",
            "orderBy": "LogStreamName",
        },
    )
    result = ncf("logs", BATCH_JOB, *REGION_ONLY)
    assert result.code == 2
    assert f"no logs yet for batch {BATCH_JOB} in /aws/sagemaker/TransformJobs" in result.stderr
    stubbed_aws.assert_done()


def queue_existing_endpoint(stubbed_aws: Any) -> None:
    """The endpoint exists, without autoscaling: ``deploy`` will update it."""
    stubbed_aws.add(
        "sagemaker", "describe_endpoint", endpoint_description(ENDPOINT, "InService", "old")
    )
    stubbed_aws.add("application-autoscaling", "describe_scalable_targets", {"ScalableTargets": []})


def test_deploy_best_of_hosts_the_best_trials_model(stubbed_aws, ncf) -> None:
    queue_existing_endpoint(stubbed_aws)
    stubbed_aws.add(
        "sagemaker",
        "describe_hyper_parameter_tuning_job",
        tuning_job_description(TUNING_JOB, "Completed"),
        {"HyperParameterTuningJobName": TUNING_JOB},
    )
    stubbed_aws.add(
        "sagemaker",
        "describe_training_job",
        training_job_description(TRIAL, "Completed"),
        {"TrainingJobName": TRIAL},
    )
    stubbed_aws.expect_model_from(f"s3://bucket/ncf/output/{TRIAL}/model.tar.gz")
    stubbed_aws.add(
        "sagemaker",
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/c"},
    )
    stubbed_aws.add(
        "sagemaker", "update_endpoint", {"EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:e"}
    )
    result = ncf("deploy", *SETTINGS, "--best-of", TUNING_JOB, "--no-wait")
    assert result.code == 0, result.stderr
    assert result.json()["model_data"] == f"s3://bucket/ncf/output/{TRIAL}/model.tar.gz"
    stubbed_aws.assert_done()


def test_deploy_best_of_a_tuning_job_without_a_best_trial(stubbed_aws, ncf) -> None:
    queue_existing_endpoint(stubbed_aws)
    stubbed_aws.add(
        "sagemaker",
        "describe_hyper_parameter_tuning_job",
        tuning_job_description(TUNING_JOB, "Failed", "every trial failed"),
    )
    result = ncf("deploy", *SETTINGS, "--best-of", TUNING_JOB)
    assert result.code == 2
    assert f"tuning job {TUNING_JOB} has no best training job" in result.stderr
    stubbed_aws.assert_done()


def test_job_commands_dry_run_print_their_requests(no_credentials, ncf) -> None:
    describe = ncf("describe", TUNING_JOB, *REGION_ONLY, "--dry-run")
    assert describe.code == 0, describe.stderr
    assert describe.json() == [
        {
            "service": "sagemaker",
            "operation": "DescribeHyperParameterTuningJob",
            "params": {"HyperParameterTuningJobName": TUNING_JOB},
        }
    ]
    endpoint = ncf("describe", ENDPOINT, *REGION_ONLY, "--dry-run")
    assert endpoint.code == 0, endpoint.stderr
    assert request_of(endpoint.json(), "DescribeEndpoint") == {"EndpointName": ENDPOINT}
    stop = ncf("stop", BATCH_JOB, *REGION_ONLY, "--dry-run")
    assert stop.code == 0, stop.stderr
    assert request_of(stop.json(), "StopTransformJob") == {"TransformJobName": BATCH_JOB}
    logs = ncf("logs", TRAINING_JOB, *REGION_ONLY, "--dry-run")
    assert logs.code == 0, logs.stderr
    assert request_of(logs.json(), "DescribeLogStreams") == {
        "logGroupName": "/aws/sagemaker/TrainingJobs",
        "logStreamNamePrefix": f"{TRAINING_JOB}/",
        "orderBy": "LogStreamName",
    }
    best = ncf("deploy", *SETTINGS, "--best-of", TUNING_JOB, "--dry-run")
    assert best.code == 0, best.stderr
    requests = best.json()
    assert request_of(requests, "DescribeHyperParameterTuningJob") == {
        "HyperParameterTuningJobName": TUNING_JOB
    }
    assert request_of(requests, "DescribeTrainingJob") == {
        "TrainingJobName": f"{TUNING_JOB}-001-dryrun00"
    }
    model = request_of(requests, "CreateModel")["PrimaryContainer"]["ModelDataUrl"]
    assert model == f"s3://dry-run/{TUNING_JOB}-001-dryrun00/output/model.tar.gz"


def test_model_sources_are_exclusive(no_credentials, ncf) -> None:
    with pytest.raises(SystemExit):
        ncf("deploy", *SETTINGS, "--best-of", TUNING_JOB, "--training-job", TRAINING_JOB)
