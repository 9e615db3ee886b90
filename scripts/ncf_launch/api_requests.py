"""One builder per AWS request of the hosting commands, shared by cloud and local mode.

Each function returns the keyword arguments of one boto3 call as a plain dict,
so ``deploy``, ``batch``, ``--local`` (whose SDK client takes the same
arguments) and ``--dry-run`` all send the same request. Nothing here calls AWS.
"""

from __future__ import annotations

from typing import Any

from ncf_launch.options import BatchOptions, DeployOptions, SecurityOptions

VARIANT_NAME = "AllTraffic"
JSON_LINES = "application/jsonlines"
#: Content types whose captured requests and responses are stored as text (not base64).
CAPTURED_JSON_TYPES = ["application/json", JSON_LINES]
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def create_model_request(
    model_name: str,
    image_uri: str,
    model_data: str,
    environment: dict[str, str],
    role_arn: str | None,
    tags: list[dict[str, str]] | None,
    security: SecurityOptions | None = None,
) -> dict[str, Any]:
    """``CreateModel``: our image with the artifact; local mode takes no role, tags or VPC."""
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
    if security is not None:
        vpc = security.vpc_config()
        if vpc:
            request["VpcConfig"] = vpc
        if security.network_isolation:
            request["EnableNetworkIsolation"] = True
    return request


def create_endpoint_config_request(
    config_name: str,
    model_name: str,
    instance_type: str,
    options: DeployOptions,
    tags: list[dict[str, str]] | None,
) -> dict[str, Any]:
    """``CreateEndpointConfig``: one variant, on instances or serverless; local mode: no tags."""
    variant: dict[str, Any] = {"VariantName": VARIANT_NAME, "ModelName": model_name}
    if options.serverless is not None:
        memory_mb, concurrency = options.serverless
        variant["ServerlessConfig"] = {"MemorySizeInMB": memory_mb, "MaxConcurrency": concurrency}
    else:
        variant.update(
            InstanceType=instance_type,
            InitialInstanceCount=options.instance_count,
            ContainerStartupHealthCheckTimeoutInSeconds=options.startup_health_check_timeout_s,
        )
    if options.model_data_download_timeout_s is not None:
        variant["ModelDataDownloadTimeoutInSeconds"] = options.model_data_download_timeout_s
    request: dict[str, Any] = {"EndpointConfigName": config_name, "ProductionVariants": [variant]}
    if options.data_capture is not None:
        request["DataCaptureConfig"] = data_capture_config(options)
    if options.security.endpoint_kms_key:
        request["KmsKeyId"] = options.security.endpoint_kms_key
    if tags is not None:
        request["Tags"] = tags
    return request


def data_capture_config(options: DeployOptions) -> dict[str, Any]:
    """``DataCaptureConfig``: requests and responses, JSON kept as text, to ``--data-capture``."""
    assert options.data_capture is not None
    uri, percent = options.data_capture
    config: dict[str, Any] = {
        "EnableCapture": True,
        "InitialSamplingPercentage": percent,
        "DestinationS3Uri": uri,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": CAPTURED_JSON_TYPES},
    }
    if options.security.kms_key:
        config["KmsKeyId"] = options.security.kms_key
    return config


def create_endpoint_request(
    endpoint_name: str, config_name: str, tags: list[dict[str, str]] | None
) -> dict[str, Any]:
    """``CreateEndpoint``; local mode takes no tags."""
    request: dict[str, Any] = {"EndpointName": endpoint_name, "EndpointConfigName": config_name}
    if tags is not None:
        request["Tags"] = tags
    return request


def update_endpoint_request(
    endpoint_name: str, config_name: str, options: DeployOptions | None = None
) -> dict[str, Any]:
    """``UpdateEndpoint``: move the endpoint to a new config (blue/green).

    ``RetainAllVariantProperties`` keeps the running instance count (set by hand or by
    autoscaling): without it the new fleet starts at the config's initial count, and
    an endpoint scaled out under load drops to one instance. With ``--canary`` or
    ``--linear`` the traffic moves to the new fleet in steps, and any of the
    ``--rollback-alarm`` alarms rolls it back.
    """
    request: dict[str, Any] = {
        "EndpointName": endpoint_name,
        "EndpointConfigName": config_name,
        "RetainAllVariantProperties": True,
    }
    if options is not None and options.traffic_shifting is not None:
        request["DeploymentConfig"] = deployment_config(options)
    return request


def deployment_config(options: DeployOptions) -> dict[str, Any]:
    """``DeploymentConfig``: blue/green with canary or linear traffic shifting, and rollback."""
    assert options.traffic_shifting is not None
    kind, percent, wait_s = options.traffic_shifting
    step = {"Type": "CAPACITY_PERCENT", "Value": percent}
    routing: dict[str, Any] = {"Type": kind, "WaitIntervalInSeconds": wait_s}
    routing["CanarySize" if kind == "CANARY" else "LinearStepSize"] = step
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing},
    }
    if options.rollback_alarms:
        config["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": name} for name in options.rollback_alarms]
        }
    return config


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
    if options.security.kms_key:
        request["TransformOutput"]["KmsKeyId"] = options.security.kms_key
    if options.security.volume_kms_key:
        request["TransformResources"]["VolumeKmsKeyId"] = options.security.volume_kms_key
    if options.max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = options.max_concurrent_transforms
    return request
