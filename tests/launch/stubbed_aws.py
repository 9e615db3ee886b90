"""Real botocore clients behind botocore's ``Stubber``, for what moto does not do like AWS.

Every request is validated against the service model before the stub answers it,
and every canned response against the output shape, so a scenario cannot send or
expect something SageMaker would not. Used where moto lacks an API or its real
behaviour: jobs that go Failed or Stopped, a blue/green update that rolls back,
CloudWatch log streams, autoscaling state.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
from botocore.stub import ANY, Stubber
from launch_constants import ACCOUNT, REGION

__all__ = [
    "ANY",
    "StubbedAws",
    "endpoint_description",
    "training_job_description",
    "transform_job_description",
    "tuning_job_description",
]

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


class StubbedAws:
    """One stubbed client per service, handed to every ``boto_session.client(...)`` call."""

    def __init__(self) -> None:
        self._session = boto3.Session(
            region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        self.clients: dict[str, Any] = {}
        self.stubbers: dict[str, Stubber] = {}

    def client(self, service_name: str, *_: Any, **__: Any) -> Any:
        service = service_name
        if service not in self.clients:
            client = self._session.client(service, endpoint_url=f"https://{service}.invalid")
            stubber = Stubber(client)
            stubber.activate()
            self.clients[service], self.stubbers[service] = client, stubber
        return self.clients[service]

    def add(
        self, service: str, operation: str, response: dict[str, Any], expected: Any = None
    ) -> None:
        """Queue ``response`` for the next ``operation`` (checking its params if ``expected``)."""
        self.client(service)
        self.stubbers[service].add_response(operation, response, expected)

    def add_error(self, service: str, operation: str, code: str, message: str) -> None:
        self.client(service)
        self.stubbers[service].add_client_error(operation, code, message)

    def expect_model_from(self, model_data: str) -> None:
        """Queue ``CreateModel``, checking it hosts ``model_data`` (the rest of it is free)."""
        self.add(
            "sagemaker",
            "create_model",
            {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/m"},
            {
                "ModelName": ANY,
                "PrimaryContainer": {"Image": ANY, "ModelDataUrl": model_data, "Environment": {}},
                "ExecutionRoleArn": ANY,
                "Tags": ANY,
            },
        )

    def assert_done(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


def training_job_description(name: str, status: str, reason: str | None = None) -> dict[str, Any]:
    """A ``DescribeTrainingJob`` answer with the fields the API always returns."""
    description: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://bucket/ncf/output/{name}/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": {"InProgress": "Training"}.get(status, status),
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": NOW,
    }
    if reason:
        description["FailureReason"] = reason
    if status == "Completed":
        description["FinalMetricDataList"] = [
            {"MetricName": "validation:hr", "Value": 0.7, "Timestamp": NOW}
        ]
    return description


def endpoint_description(
    name: str, status: str, config_name: str, instance_count: int = 1, reason: str | None = None
) -> dict[str, Any]:
    """A ``DescribeEndpoint`` answer with one variant."""
    description: dict[str, Any] = {
        "EndpointName": name,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}",
        "EndpointConfigName": config_name,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "CurrentInstanceCount": instance_count,
                "DesiredInstanceCount": instance_count,
            }
        ],
    }
    if reason:
        description["FailureReason"] = reason
    return description


def tuning_job_description(name: str, status: str, reason: str | None = None) -> dict[str, Any]:
    """A ``DescribeHyperParameterTuningJob`` answer with the fields the API always returns."""
    description: dict[str, Any] = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": (
            f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{name}"
        ),
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": NOW,
        "TrainingJobStatusCounters": {"Completed": 3, "Stopped": 1},
        "ObjectiveStatusCounters": {"Succeeded": 3},
    }
    if reason:
        description["FailureReason"] = reason
    if status == "Completed":
        description["BestTrainingJob"] = {
            "TrainingJobName": f"{name}-003-0123abcd",
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}-003",
            "CreationTime": NOW,
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": {"learning_rate": "0.003"},
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "MetricName": "validation:hr",
                "Value": 0.71,
            },
        }
    return description


def transform_job_description(name: str, status: str, reason: str | None = None) -> dict[str, Any]:
    """A ``DescribeTransformJob`` answer with the fields the API always returns."""
    description: dict[str, Any] = {
        "TransformJobName": name,
        "TransformJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{name}",
        "TransformJobStatus": status,
        "ModelName": "ncf-model-x",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}
        },
        "TransformResources": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
        "CreationTime": NOW,
    }
    if reason:
        description["FailureReason"] = reason
    return description
