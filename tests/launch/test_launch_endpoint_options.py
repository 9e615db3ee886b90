"""Endpoint options, network and encryption (issue 13, "also expected").

Serverless endpoints, deployment guardrails, data capture, the model download
timeout, VPC, network isolation and KMS keys. The dry runs print the requests
after botocore validated them against the service model; the stubbed scenarios
(``stubbed_aws``) assert the exact request a real command sends. Moto keeps none
of these fields, so it is not used here.
"""

from __future__ import annotations

from typing import Any

import pytest
from dry_run_requests import request_of
from launch_constants import ACCOUNT, IMAGE_URI, REGION, SETTINGS
from stubbed_aws import ANY, endpoint_description

DEPLOY = ("deploy", *SETTINGS, "--model-data", "s3://ncf-data/m/model.tar.gz")
DRY_DEPLOY = (*DEPLOY, "--dry-run")
NETWORK = (
    "--subnets",
    "subnet-1,subnet-2",
    "--security-group-ids",
    "sg-1",
    "--network-isolation",
    "--output-kms-key",
    "alias/ncf-output",
)
VPC = {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}


def dry(ncf: Any, *argv: str) -> list[dict[str, Any]]:
    result = ncf(*argv)
    assert result.code == 0, result.stderr
    return result.json()  # type: ignore[no-any-return]


def test_serverless_endpoint_config(ncf, no_credentials) -> None:
    requests = dry(ncf, *DRY_DEPLOY, "--serverless", "2048,20", "--instance-type", "ml.g5.xlarge")
    (variant,) = request_of(requests, "CreateEndpointConfig")["ProductionVariants"]
    assert variant == {
        "VariantName": "AllTraffic",
        "ModelName": request_of(requests, "CreateModel")["ModelName"],
        "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 20},
    }
    # Serverless runs on CPUs: the CPU image, whatever --instance-type says.
    assert request_of(requests, "CreateModel")["PrimaryContainer"]["Image"] == IMAGE_URI


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1000,20", "memory must be 1024-6144 MB in steps of 1024, got 1000"),
        ("7168,20", "memory must be 1024-6144 MB in steps of 1024, got 7168"),
        ("2048,0", "max concurrency must be 1-200, got 0"),
        ("2048,201", "max concurrency must be 1-200, got 201"),
        ("2048", "expected MEMORY_MB,MAX_CONCURRENCY (two integers)"),
    ],
)
def test_serverless_limits_are_checked(ncf, no_credentials, value, message) -> None:
    result = ncf(*DRY_DEPLOY, "--serverless", value)
    assert result.code == 2
    assert f"--serverless: {message}" in result.stderr


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (("--autoscale-min", "1", "--autoscale-max", "2"), "--autoscale-min/--autoscale-max"),
        (("--data-capture", "s3://ncf-data/capture"), "--data-capture"),
        (("--subnets", "subnet-1", "--security-group-ids", "sg-1"), "--subnets"),
        (("--network-isolation",), "--network-isolation"),
        (("--canary", "10,300"), "--canary/--linear"),
        (("--model-data-download-timeout", "600"), "--model-data-download-timeout"),
    ],
)
def test_what_serverless_endpoints_lack_is_refused(ncf, no_credentials, extra, named) -> None:
    result = ncf(*DRY_DEPLOY, "--serverless", "2048,20", *extra)
    assert result.code == 2
    assert "--serverless does not go with" in result.stderr and named in result.stderr


def test_data_capture_download_timeout_and_endpoint_key(ncf, no_credentials) -> None:
    requests = dry(
        ncf,
        *DRY_DEPLOY,
        "--data-capture",
        "s3://ncf-data/capture/,20",
        "--model-data-download-timeout",
        "900",
        "--endpoint-kms-key",
        "alias/ncf-endpoint",
        *NETWORK,
    )
    config = request_of(requests, "CreateEndpointConfig")
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": "s3://ncf-data/capture/",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "JsonContentTypes": ["application/json", "application/jsonlines"]
        },
        "KmsKeyId": "alias/ncf-output",
    }
    assert config["KmsKeyId"] == "alias/ncf-endpoint"
    assert config["ProductionVariants"][0]["ModelDataDownloadTimeoutInSeconds"] == 900
    model = request_of(requests, "CreateModel")
    assert model["VpcConfig"] == VPC
    assert model["EnableNetworkIsolation"] is True
    default = request_of(
        dry(ncf, *DRY_DEPLOY, "--data-capture", "s3://ncf-data/capture/"), "CreateEndpointConfig"
    )
    assert default["DataCaptureConfig"]["InitialSamplingPercentage"] == 100
    assert "KmsKeyId" not in default["DataCaptureConfig"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--data-capture", "s3://ncf-data/c,101"), "--data-capture: percent must be 0-100"),
        (("--data-capture", "ncf-data/c"), "--data-capture: expected an s3://bucket/key URI"),
        (("--model-data-download-timeout", "59"), "must be 60-3600 seconds, got 59"),
        (("--canary", "60,300"), "--canary: percent must be 1-50, got 60"),
        (("--linear", "5,300"), "--linear: percent must be 10-50, got 5"),
        (("--linear", "20,3601"), "--linear: wait must be 0-3600 seconds, got 3601"),
        (("--rollback-alarm", "ncf-5xx"), "--rollback-alarm needs --canary or --linear"),
        (("--subnets", "subnet-1"), "a VPC needs both --subnets and --security-group-ids"),
    ],
)
def test_endpoint_option_ranges_are_checked(ncf, no_credentials, extra, message) -> None:
    result = ncf(*DRY_DEPLOY, *extra)
    assert result.code == 2
    assert message in result.stderr


def expect_model_in_the_vpc(stubbed_aws: Any) -> None:
    """``CreateModel`` with the VPC and network isolation of ``NETWORK``."""
    stubbed_aws.add(
        "sagemaker",
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/m"},
        {
            "ModelName": ANY,
            "PrimaryContainer": ANY,
            "ExecutionRoleArn": ANY,
            "Tags": ANY,
            "VpcConfig": VPC,
            "EnableNetworkIsolation": True,
        },
    )


def queue_update(stubbed_aws: Any, expected_update: dict[str, Any]) -> None:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    stubbed_aws.add(
        "sagemaker", "describe_endpoint", endpoint_description("ncf-endpoint", "InService", "old")
    )
    stubbed_aws.add("application-autoscaling", "describe_scalable_targets", {"ScalableTargets": []})
    expect_model_in_the_vpc(stubbed_aws)
    stubbed_aws.add(
        "sagemaker", "create_endpoint_config", {"EndpointConfigArn": f"{arn}:endpoint-config/c"}
    )
    stubbed_aws.add(
        "sagemaker", "update_endpoint", {"EndpointArn": f"{arn}:endpoint/e"}, expected_update
    )


@pytest.mark.parametrize(
    ("flag", "value", "routing"),
    [
        (
            "--canary",
            "10,600",
            {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 600,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
        ),
        (
            "--linear",
            "25,300",
            {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 300,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            },
        ),
    ],
)
def test_guardrails_shift_traffic_and_roll_back_on_alarms(
    stubbed_aws, ncf, flag, value, routing
) -> None:
    queue_update(
        stubbed_aws,
        {
            "EndpointName": "ncf-endpoint",
            "EndpointConfigName": ANY,
            "RetainAllVariantProperties": True,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing},
                "AutoRollbackConfiguration": {
                    "Alarms": [{"AlarmName": "ncf-5xx"}, {"AlarmName": "ncf-latency-p99"}]
                },
            },
        },
    )
    result = ncf(
        *DEPLOY,
        flag,
        value,
        "--rollback-alarm",
        "ncf-5xx",
        "--rollback-alarm",
        "ncf-latency-p99",
        *NETWORK,
        "--no-wait",
    )
    assert result.code == 0, result.stderr
    assert (result.json()["action"], result.json()["status"]) == ("update", "Updating")
    stubbed_aws.assert_done()


def test_a_serverless_endpoint_is_created_with_its_config(stubbed_aws, ncf) -> None:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    stubbed_aws.add_error("sagemaker", "describe_endpoint", "ValidationException", "not found")
    stubbed_aws.add("sagemaker", "create_model", {"ModelArn": f"{arn}:model/m"})
    stubbed_aws.add(
        "sagemaker",
        "create_endpoint_config",
        {"EndpointConfigArn": f"{arn}:endpoint-config/c"},
        {
            "EndpointConfigName": ANY,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": ANY,
                    "ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 50},
                }
            ],
            "Tags": ANY,
        },
    )
    stubbed_aws.add("sagemaker", "create_endpoint", {"EndpointArn": f"{arn}:endpoint/e"})
    result = ncf(*DEPLOY, "--serverless", "4096,50", "--no-wait")
    assert result.code == 0, result.stderr
    report = result.json()
    assert (report["instance_type"], report["gpu"]) == ("serverless", False)
    stubbed_aws.assert_done()


def test_batch_runs_in_the_vpc_with_its_keys(stubbed_aws, ncf, monkeypatch) -> None:
    import ncf_launch.batch

    monkeypatch.setattr(ncf_launch.batch, "unique_name", lambda base: f"{base}-1")
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    expect_model_in_the_vpc(stubbed_aws)
    stubbed_aws.add(
        "sagemaker",
        "create_transform_job",
        {"TransformJobArn": f"{arn}:transform-job/ncf-batch-1"},
        {
            "TransformJobName": "ncf-batch-1",
            "ModelName": ANY,
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 6,
            "TransformInput": ANY,
            "TransformOutput": {
                "S3OutputPath": "s3://ncf-data/out/",
                "Accept": "application/jsonlines",
                "AssembleWith": "Line",
                "KmsKeyId": "alias/ncf-output",
            },
            "TransformResources": {
                "InstanceType": "ml.c5.xlarge",
                "InstanceCount": 1,
                "VolumeKmsKeyId": "alias/ncf-volume",
            },
            "Tags": ANY,
        },
    )
    result = ncf(
        "batch",
        *SETTINGS,
        "--input",
        "s3://ncf-data/in/",
        "--output",
        "s3://ncf-data/out/",
        "--model-data",
        "s3://ncf-data/m.tar.gz",
        *NETWORK,
        "--volume-kms-key",
        "alias/ncf-volume",
        "--no-wait",
    )
    assert result.code == 0, result.stderr
    assert result.json()["transform_job_name"] == "ncf-batch-1"
    stubbed_aws.assert_done()


@pytest.mark.parametrize(
    ("command", "operation", "definition_key"),
    [
        ("train", "CreateTrainingJob", None),
        ("tune", "CreateHyperParameterTuningJob", "TrainingJobDefinition"),
    ],
)
def test_training_and_tuning_run_in_the_vpc_with_their_keys(
    ncf, no_credentials, command, operation, definition_key
) -> None:
    """The tuner of sagemaker 3.27 drops isolation and the volume key: they are put back."""
    requests = dry(
        ncf,
        command,
        *SETTINGS,
        "--dry-run",
        "--skip-role-check",
        "--train",
        "s3://ncf-data/train/",
        *NETWORK,
        "--volume-kms-key",
        "alias/ncf-volume",
    )
    sent = request_of(requests, operation)
    definition = sent[definition_key] if definition_key else sent
    assert definition["VpcConfig"] == {
        "SecurityGroupIds": ["sg-1"],
        "Subnets": ["subnet-1", "subnet-2"],
    }
    assert definition["EnableNetworkIsolation"] is True
    assert definition["OutputDataConfig"]["KmsKeyId"] == "alias/ncf-output"
    assert definition["ResourceConfig"]["VolumeKmsKeyId"] == "alias/ncf-volume"
