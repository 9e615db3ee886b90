"""What ``deploy``, ``batch`` and ``cleanup`` share: the model to host, and its autoscaling.

The requests come from :mod:`ncf_launch.api_requests`; this module sends them
and reads back what they need (the latest training job, an endpoint's state).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ncf_launch.api_requests import (
    SCALABLE_DIMENSION,
    create_model_request,
    put_scaling_policy_request,
    register_scalable_target_request,
    scalable_resource_id,
)
from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.names import image_for_instance_type, unique_name
from ncf_launch.options import TRAIN_BASE_JOB_NAME, DeployOptions
from ncf_launch.settings import Settings, check_s3_uri


def resolve_model_data(
    context: AwsContext, model_data: str | None, training_job: str | None
) -> str:
    """The model artifact: given, from a named training job, or from the latest completed one.

    Raises:
        LaunchError: Nothing found, or the job did not complete.
    """
    if model_data:
        if model_data.startswith("file://"):
            return model_data
        return check_s3_uri(model_data, "--model-data")
    client = context.client("sagemaker")
    if not training_job:
        jobs = client.list_training_jobs(
            # Tuning trials (ncf-tune-...) would otherwise fill the page of ten.
            NameContains=TRAIN_BASE_JOB_NAME,
            StatusEquals="Completed",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=10,
        ).get("TrainingJobSummaries", [])
        # Sorted again here: the API sorts, but some emulators (moto) ignore SortBy.
        jobs = sorted(
            (job for job in jobs if job["TrainingJobName"].startswith(TRAIN_BASE_JOB_NAME)),
            key=lambda job: job["CreationTime"],
            reverse=True,
        )
        if not jobs:
            raise LaunchError(
                f"no completed {TRAIN_BASE_JOB_NAME} training job found in this region: pass "
                "--model-data s3://.../model.tar.gz or --training-job NAME"
            )
        training_job = jobs[0]["TrainingJobName"]
    description = client.describe_training_job(TrainingJobName=training_job)
    if description.get("TrainingJobStatus") != "Completed":
        raise LaunchError(
            f"training job {training_job} is {description.get('TrainingJobStatus')}, not Completed"
        )
    return description["ModelArtifacts"]["S3ModelArtifacts"]


def create_model(
    client: Any,
    settings: Settings,
    model_data: str,
    environment: dict[str, str],
    instance_type: str,
    local: bool,
) -> str:
    """``CreateModel`` with the image flavour that fits the instance type; returns the name."""
    model_name = unique_name("ncf-model")
    client.create_model(
        **create_model_request(
            model_name,
            image_for_instance_type(settings.require_image_uri(), instance_type),
            model_data,
            environment,
            role_arn=None if local else settings.require_role_arn(),
            tags=None if local else settings.boto_tags(),
        )
    )
    return model_name


def deregister_autoscaling(context: AwsContext, endpoint_name: str) -> bool:
    """Remove the variant's scalable target (and so its policies), if it has one."""
    autoscaling = context.client("application-autoscaling")
    resource_id = scalable_resource_id(endpoint_name)
    targets = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id]
    ).get("ScalableTargets", [])
    if not targets:
        return False
    autoscaling.deregister_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=SCALABLE_DIMENSION,
    )
    return True


def register_autoscaling(context: AwsContext, endpoint_name: str, options: DeployOptions) -> None:
    """Target tracking on invocations per instance between ``autoscale_min`` and ``_max``."""
    autoscaling = context.client("application-autoscaling")
    autoscaling.register_scalable_target(**register_scalable_target_request(endpoint_name, options))
    autoscaling.put_scaling_policy(**put_scaling_policy_request(endpoint_name, options))


def endpoint_exists(client: Any, endpoint_name: str) -> bool:
    """Whether the endpoint exists (in any status), so deploy updates it instead."""
    try:
        client.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return False
        raise
    return True
