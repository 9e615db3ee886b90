"""What ``deploy``, ``batch`` and ``cleanup`` share: the model to host, and its autoscaling.

The requests come from :mod:`ncf_launch.api_requests`; this module sends them
and reads back what they need (the latest training job, an endpoint's state).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from ncf_launch import PROJECT_TAG_KEY, PROJECT_TAG_VALUE
from ncf_launch.api_requests import (
    SCALABLE_DIMENSION,
    create_model_request,
    put_scaling_policy_request,
    register_scalable_target_request,
    scalable_resource_id,
)
from ncf_launch.aws import AwsContext
from ncf_launch.errors import JobEndedError, LaunchError
from ncf_launch.names import image_for_instance_type, unique_name
from ncf_launch.options import (
    TRAIN_BASE_JOB_NAME,
    BatchOptions,
    DeployOptions,
    SecurityOptions,
)
from ncf_launch.settings import Settings, check_s3_uri


def resolve_model_data(
    context: AwsContext,
    model_data: str | None,
    training_job: str | None,
    best_of: str | None = None,
) -> str:
    """The model artifact: given, or from a training job.

    The training job is ``training_job``, the best training job of the tuning job
    ``best_of``, or the latest completed ``ncf-train-*`` job.

    Raises:
        LaunchError: Nothing found, or the job did not complete.
    """
    if model_data:
        if model_data.startswith("file://"):
            return model_data
        return check_s3_uri(model_data, "--model-data")
    client = context.client("sagemaker")
    if best_of:
        best = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=best_of).get(
            "BestTrainingJob"
        )
        if not best:
            raise LaunchError(f"tuning job {best_of} has no best training job (yet)")
        training_job = best["TrainingJobName"]
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
    security: SecurityOptions | None = None,
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
            security=None if local else security,
        )
    )
    return model_name


def create_model_for(
    context: AwsContext,
    settings: Settings,
    options: DeployOptions | BatchOptions,
    environment: dict[str, str],
    instance_type: str,
) -> tuple[str, str]:
    """``CreateModel`` in AWS for the artifact ``options`` name.

    The artifact is ``--model-data``, ``--training-job``'s, ``--best-of``'s best job's,
    or the latest completed training job's (``resolve_model_data``).

    Returns:
        ``(model name, model artifact URI)``.

    Raises:
        LaunchError: No artifact found, or its training job did not complete.
    """
    model_data = resolve_model_data(
        context, options.model_data, options.training_job, options.best_of
    )
    model_name = create_model(
        context.client("sagemaker"),
        settings,
        model_data,
        environment,
        instance_type,
        local=False,
        security=options.security,
    )
    return model_name, model_data


@dataclass(frozen=True)
class AutoscalingSetup:
    """An endpoint variant's autoscaling as the requests that register it again."""

    target: dict[str, Any]
    policies: list[dict[str, Any]]


#: The members of a ``ScalingPolicy`` that ``PutScalingPolicy`` takes back unchanged.
POLICY_REQUEST_KEYS = (
    "PolicyName",
    "ServiceNamespace",
    "ResourceId",
    "ScalableDimension",
    "PolicyType",
    "StepScalingPolicyConfiguration",
    "TargetTrackingScalingPolicyConfiguration",
)


def read_autoscaling(context: AwsContext, endpoint_name: str) -> AutoscalingSetup | None:
    """The variant's scalable target and its policies, or ``None`` without autoscaling."""
    autoscaling = context.client("application-autoscaling")
    resource_id = scalable_resource_id(endpoint_name)
    targets = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id]
    ).get("ScalableTargets", [])
    if not targets:
        return None
    (target,) = targets
    policies = autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION
    ).get("ScalingPolicies", [])
    return AutoscalingSetup(
        target={
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource_id,
            "ScalableDimension": SCALABLE_DIMENSION,
            "MinCapacity": target["MinCapacity"],
            "MaxCapacity": target["MaxCapacity"],
        },
        policies=[
            {key: policy[key] for key in POLICY_REQUEST_KEYS if key in policy}
            for policy in policies
        ],
    )


def deregister_autoscaling(context: AwsContext, endpoint_name: str) -> None:
    """Remove the variant's scalable target, and so its policies."""
    context.client("application-autoscaling").deregister_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=scalable_resource_id(endpoint_name),
        ScalableDimension=SCALABLE_DIMENSION,
    )


def restore_autoscaling(context: AwsContext, setup: AutoscalingSetup) -> None:
    """Register a removed target and its policies again; says what to redo if AWS refuses.

    Called on the way out of an update, also when the update failed, so a refusal
    here must not hide the update's own error: it is printed, not raised.
    """
    autoscaling = context.client("application-autoscaling")
    try:
        autoscaling.register_scalable_target(**setup.target)
        for policy in setup.policies:
            autoscaling.put_scaling_policy(**policy)
    except ClientError as error:
        print(
            f"warning: could not register autoscaling again ({error}); register it by hand: "
            f"{setup.target} with policies {setup.policies}",
            file=sys.stderr,
            flush=True,
        )


def register_autoscaling(context: AwsContext, endpoint_name: str, options: DeployOptions) -> None:
    """Target tracking on invocations per instance between ``autoscale_min`` and ``_max``."""
    autoscaling = context.client("application-autoscaling")
    autoscaling.register_scalable_target(**register_scalable_target_request(endpoint_name, options))
    autoscaling.put_scaling_policy(**put_scaling_policy_request(endpoint_name, options))


def describe_endpoint_or_none(client: Any, endpoint_name: str) -> dict[str, Any] | None:
    """The endpoint's description, or ``None`` when there is no such endpoint."""
    try:
        return client.describe_endpoint(EndpointName=endpoint_name)  # type: ignore[no-any-return]
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def wait_for(client: Any, waiter_name: str, **params: Any) -> None:
    """Run a botocore waiter; a terminal failure state is left to the caller's describe.

    The waiter's own message ("Waiter ... encountered a terminal failure state")
    says nothing of why, so the caller reads the resource's FailureReason instead.

    Raises:
        WaiterError: The waiter gave up (max attempts) or the call itself failed.
    """
    try:
        client.get_waiter(waiter_name).wait(**params)
    except WaiterError as error:
        if "terminal failure state" not in str(error):
            raise


def wait_for_endpoint(client: Any, endpoint_name: str) -> dict[str, Any]:
    """Wait until the endpoint is InService and return its description.

    Raises:
        JobEndedError: It ended Failed (with its FailureReason).
    """
    wait_for(
        client,
        "endpoint_in_service",
        EndpointName=endpoint_name,
        WaiterConfig={"Delay": 30, "MaxAttempts": 120},
    )
    description: dict[str, Any] = client.describe_endpoint(EndpointName=endpoint_name)
    if description["EndpointStatus"] != "InService":
        raise JobEndedError(
            "endpoint",
            endpoint_name,
            description["EndpointStatus"],
            description.get("FailureReason"),
        )
    return description


def is_ours(client: Any, arn: str) -> bool:
    """Whether the resource carries the tag ``project=ncf-sagemaker`` (this project made it)."""
    tags = client.list_tags(ResourceArn=arn).get("Tags", [])
    return {"Key": PROJECT_TAG_KEY, "Value": PROJECT_TAG_VALUE} in tags


def delete_config_and_models(client: Any, config_name: str) -> list[str]:
    """Delete an endpoint config and the models of its variants that this project created.

    Returns the names deleted. Resources without the project tag are left alone.
    """
    config = client.describe_endpoint_config(EndpointConfigName=config_name)
    deleted: list[str] = []
    if is_ours(client, config["EndpointConfigArn"]):
        client.delete_endpoint_config(EndpointConfigName=config_name)
        deleted.append(config_name)
    for variant in config["ProductionVariants"]:
        model = client.describe_model(ModelName=variant["ModelName"])
        if is_ours(client, model["ModelArn"]):
            client.delete_model(ModelName=variant["ModelName"])
            deleted.append(variant["ModelName"])
    return deleted
