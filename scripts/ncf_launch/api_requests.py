"""One builder per AWS request of the hosting commands, shared by cloud and local mode.

Each function returns the keyword arguments of one boto3 call as a plain dict,
so ``deploy``, ``batch``, ``--local`` (whose SDK client takes the same
arguments) and ``--dry-run`` all send the same request. Nothing here calls AWS.
"""

from __future__ import annotations

from typing import Any

from ncf_launch.options import BatchOptions, DeployOptions

VARIANT_NAME = "AllTraffic"
JSON_LINES = "application/jsonlines"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def create_model_request(
    model_name: str,
    image_uri: str,
    model_data: str,
    environment: dict[str, str],
    role_arn: str | None,
    tags: list[dict[str, str]] | None,
) -> dict[str, Any]:
    """``CreateModel``: our image with the artifact; local mode takes no role or tags."""
    request: dict[str, Any] = {
        "ModelName": model_name,
        "PrimaryContainer": {
            "Image": image_uri,
            "ModelDataUrl": model_data,
            "Environment": environment,
        },
    }
    if role_arn is not None:
        request["ExecutionRoleArn"] = role_arn
    if tags is not None:
        request["Tags"] = tags
    return request


def create_endpoint_config_request(
    config_name: str,
    model_name: str,
    instance_type: str,
    options: DeployOptions,
    tags: list[dict[str, str]] | None,
) -> dict[str, Any]:
    """``CreateEndpointConfig`` with one variant; local mode takes no tags."""
    variant: dict[str, Any] = {
        "VariantName": VARIANT_NAME,
        "ModelName": model_name,
        "InstanceType": instance_type,
        "InitialInstanceCount": options.instance_count,
        "ContainerStartupHealthCheckTimeoutInSeconds": options.startup_health_check_timeout_s,
    }
    request: dict[str, Any] = {"EndpointConfigName": config_name, "ProductionVariants": [variant]}
    if tags is not None:
        request["Tags"] = tags
    return request


def create_endpoint_request(
    endpoint_name: str, config_name: str, tags: list[dict[str, str]] | None
) -> dict[str, Any]:
    """``CreateEndpoint``; local mode takes no tags."""
    request: dict[str, Any] = {"EndpointName": endpoint_name, "EndpointConfigName": config_name}
    if tags is not None:
        request["Tags"] = tags
    return request


def update_endpoint_request(endpoint_name: str, config_name: str) -> dict[str, Any]:
    """``UpdateEndpoint``: move the endpoint to a new config (blue/green).

    ``RetainAllVariantProperties`` keeps the running instance count (set by hand or by
    autoscaling): without it the new fleet starts at the config's initial count, and
    an endpoint scaled out under load drops to one instance.
    """
    return {
        "EndpointName": endpoint_name,
        "EndpointConfigName": config_name,
        "RetainAllVariantProperties": True,
    }


def scalable_resource_id(endpoint_name: str) -> str:
    """Application Auto Scaling's id of the endpoint's one variant."""
    return f"endpoint/{endpoint_name}/variant/{VARIANT_NAME}"


def register_scalable_target_request(endpoint_name: str, options: DeployOptions) -> dict[str, Any]:
    """``RegisterScalableTarget`` between ``autoscale_min`` and ``autoscale_max`` instances."""
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": scalable_resource_id(endpoint_name),
        "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": options.autoscale_min,
        "MaxCapacity": options.autoscale_max,
    }


def put_scaling_policy_request(endpoint_name: str, options: DeployOptions) -> dict[str, Any]:
    """``PutScalingPolicy``: target tracking on invocations per instance."""
    return {
        "PolicyName": f"{endpoint_name}-invocations-per-instance",
        "ServiceNamespace": "sagemaker",
        "ResourceId": scalable_resource_id(endpoint_name),
        "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": options.autoscale_target,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": options.scale_in_cooldown_s,
            "ScaleOutCooldown": options.scale_out_cooldown_s,
        },
    }


def create_transform_job_request(
    job_name: str,
    model_name: str,
    instance_type: str,
    output_uri: str,
    options: BatchOptions,
    tags: list[dict[str, str]],
) -> dict[str, Any]:
    """``CreateTransformJob`` over JSON Lines: one output line per input line."""
    request: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "BatchStrategy": options.batch_strategy,
        "MaxPayloadInMB": options.max_payload_mb,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": options.input_uri}},
            "ContentType": JSON_LINES,
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": output_uri,
            "Accept": JSON_LINES,
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": instance_type,
            "InstanceCount": options.instance_count,
        },
        "Tags": tags,
    }
    if options.max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = options.max_concurrent_transforms
    return request
