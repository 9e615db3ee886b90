"""``ncf deploy``: a real-time endpoint from a model artifact or the latest training job.

Hosting is three plain API resources — Model, EndpointConfig, Endpoint — so the
requests are built here with boto3 (the same dicts go to SageMaker or, with
``--local``, to the SDK's local-mode client, which takes the same arguments).

An existing endpoint is updated in place: a new model and endpoint config, then
``UpdateEndpoint``, which SageMaker rolls out blue/green — the old fleet keeps
serving until the new one passes its health checks, so there is no downtime.
Autoscaling (target tracking on ``SageMakerVariantInvocationsPerInstance``) is
deregistered before such an update and registered again after it, as AWS
requires when the instance type may change.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.settings import Settings, check_s3_uri

VARIANT_NAME = "AllTraffic"
INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
GPU_FAMILIES = ("ml.g4dn", "ml.g5", "ml.g6", "ml.p3", "ml.p4d", "ml.p5")
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def unique_name(base: str) -> str:
    """``base-YYYYmmdd-HHMMSS-mmm``, at most 63 characters as SageMaker requires."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{int(time.time() * 1000) % 1000:03d}"
    return f"{base[: 63 - len(stamp) - 1]}-{stamp}"


def check_name(name: str, what: str) -> str:
    """``name`` if SageMaker accepts it as a resource name."""
    if not NAME_PATTERN.match(name):
        raise LaunchError(
            f"{what} {name!r}: letters, digits and hyphens, at most 63, no leading hyphen"
        )
    return name


def check_instance_type(instance_type: str, local: bool = False) -> str:
    """``ml.<family>.<size>`` (or ``local`` / ``local_gpu`` with ``--local``)."""
    if local:
        return "local_gpu" if instance_type in GPU_FAMILIES or "gpu" in instance_type else "local"
    if not INSTANCE_TYPE_PATTERN.match(instance_type):
        raise LaunchError(f"instance type {instance_type!r}: expected e.g. ml.c5.xlarge")
    return instance_type


def is_gpu(instance_type: str) -> bool:
    """Whether the instance type has an NVIDIA GPU (use the GPU image flavour)."""
    return instance_type.startswith(GPU_FAMILIES)


@dataclass
class DeployOptions:
    """What a deployment needs beyond the shared settings."""

    endpoint_name: str = "ncf-endpoint"
    model_data: str | None = None
    training_job: str | None = None
    instance_type: str = "ml.c5.xlarge"
    instance_count: int = 1
    workers: int | None = None
    timeout_s: int | None = None
    startup_health_check_timeout_s: int = 600
    environment: dict[str, str] = field(default_factory=dict)
    autoscale_min: int | None = None
    autoscale_max: int | None = None
    autoscale_target: float = 100.0
    scale_in_cooldown_s: int = 300
    scale_out_cooldown_s: int = 60


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
            NameContains="ncf-",
            StatusEquals="Completed",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=10,
        ).get("TrainingJobSummaries", [])
        # Sorted again here: the API sorts, but some emulators (moto) ignore SortBy.
        jobs = sorted(
            (job for job in jobs if job["TrainingJobName"].startswith("ncf-train")),
            key=lambda job: job["CreationTime"],
            reverse=True,
        )
        if not jobs:
            raise LaunchError(
                "no completed ncf-train training job found in this region: pass --model-data "
                "s3://.../model.tar.gz or --training-job NAME"
            )
        training_job = jobs[0]["TrainingJobName"]
    description = client.describe_training_job(TrainingJobName=training_job)
    if description.get("TrainingJobStatus") != "Completed":
        raise LaunchError(
            f"training job {training_job} is {description.get('TrainingJobStatus')}, not Completed"
        )
    return description["ModelArtifacts"]["S3ModelArtifacts"]


def container_environment(options: DeployOptions) -> dict[str, str]:
    """Serving settings the container reads (issue 3): workers and request timeout."""
    environment = dict(options.environment)
    if options.workers is not None:
        environment["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(options.workers)
    if options.timeout_s is not None:
        environment["SAGEMAKER_MODEL_SERVER_TIMEOUT"] = str(options.timeout_s)
    return environment


def create_model(
    client: Any, settings: Settings, model_data: str, environment: dict[str, str], local: bool
) -> str:
    """``CreateModel`` with our image and the artifact; returns the model name."""
    model_name = unique_name("ncf-model")
    request: dict[str, Any] = {
        "ModelName": model_name,
        "PrimaryContainer": {
            "Image": settings.require_image_uri(),
            "ModelDataUrl": model_data,
            "Environment": environment,
        },
    }
    if not local:
        request["ExecutionRoleArn"] = settings.require_role_arn()
        request["Tags"] = settings.boto_tags()
    client.create_model(**request)
    return model_name


def scalable_resource_id(endpoint_name: str) -> str:
    """Application Auto Scaling's id of the endpoint's one variant."""
    return f"endpoint/{endpoint_name}/variant/{VARIANT_NAME}"


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
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
    )
    return True


def register_autoscaling(context: AwsContext, endpoint_name: str, options: DeployOptions) -> None:
    """Target tracking on invocations per instance between ``autoscale_min`` and ``_max``."""
    autoscaling = context.client("application-autoscaling")
    resource_id = scalable_resource_id(endpoint_name)
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=options.autoscale_min,
        MaxCapacity=options.autoscale_max,
    )
    autoscaling.put_scaling_policy(
        PolicyName=f"{endpoint_name}-invocations-per-instance",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": options.autoscale_target,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": options.scale_in_cooldown_s,
            "ScaleOutCooldown": options.scale_out_cooldown_s,
        },
    )


def endpoint_exists(client: Any, endpoint_name: str) -> bool:
    """Whether the endpoint exists (in any status), so deploy updates it instead."""
    from botocore.exceptions import ClientError

    try:
        client.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return False
        raise
    return True


def run_deploy(settings: Settings, options: DeployOptions, wait: bool = True) -> dict[str, Any]:
    """Create or update the endpoint; returns names and, with ``wait``, its status."""
    check_name(options.endpoint_name, "--endpoint-name")
    instance_type = check_instance_type(options.instance_type, local=settings.local)
    settings.require_image_uri()
    autoscale = options.autoscale_min is not None or options.autoscale_max is not None
    if autoscale:
        if options.autoscale_min is None or options.autoscale_max is None:
            raise LaunchError("autoscaling needs both --autoscale-min and --autoscale-max")
        if not 1 <= options.autoscale_min <= options.autoscale_max:
            raise LaunchError("autoscaling needs 1 <= --autoscale-min <= --autoscale-max")
        if not wait and not settings.dry_run:
            raise LaunchError(
                "autoscaling is registered once the endpoint is InService: drop --no-wait"
            )
    if settings.local:
        raise LaunchError("use run_local_deploy for --local")  # the CLI routes --local there
    settings.require_role_arn()
    context = AwsContext(settings)
    client = context.client("sagemaker")
    model_data = resolve_model_data(context, options.model_data, options.training_job)
    environment = container_environment(options)
    model_name = create_model(client, settings, model_data, environment, local=False)
    config_name = unique_name(f"{options.endpoint_name}-config")
    client.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {
                "VariantName": VARIANT_NAME,
                "ModelName": model_name,
                "InstanceType": instance_type,
                "InitialInstanceCount": options.instance_count,
                "ContainerStartupHealthCheckTimeoutInSeconds": (
                    options.startup_health_check_timeout_s
                ),
            }
        ],
        Tags=settings.boto_tags(),
    )
    updating = endpoint_exists(client, options.endpoint_name)
    had_autoscaling = False
    if updating:
        had_autoscaling = deregister_autoscaling(context, options.endpoint_name)
        client.update_endpoint(EndpointName=options.endpoint_name, EndpointConfigName=config_name)
    else:
        client.create_endpoint(
            EndpointName=options.endpoint_name,
            EndpointConfigName=config_name,
            Tags=settings.boto_tags(),
        )
    dry_run = context.recorder is not None
    status = "Updating" if updating else "Creating"
    if wait and not dry_run:
        print(f"waiting for endpoint {options.endpoint_name} to be InService ...", flush=True)
        client.get_waiter("endpoint_in_service").wait(
            EndpointName=options.endpoint_name, WaiterConfig={"Delay": 30, "MaxAttempts": 120}
        )
        status = client.describe_endpoint(EndpointName=options.endpoint_name)["EndpointStatus"]
    if autoscale:
        register_autoscaling(context, options.endpoint_name, options)
    elif had_autoscaling:
        print(
            "note: the endpoint had autoscaling, deregistered for the update; pass "
            "--autoscale-min/--autoscale-max to register it again",
            flush=True,
        )
    if dry_run:
        return context.dry_run_result()
    return {
        "endpoint_name": options.endpoint_name,
        "endpoint_config_name": config_name,
        "model_name": model_name,
        "model_data": model_data,
        "instance_type": instance_type,
        "gpu": is_gpu(instance_type),
        "action": "update" if updating else "create",
        "status": status,
        "autoscaling": autoscale,
    }


def run_local_deploy(
    settings: Settings, options: DeployOptions, port: int = 8080, container_root: Any = None
) -> tuple[Any, dict[str, Any]]:
    """Serve the model with SageMaker local mode; returns the local session and the names.

    The SDK's local client takes the same ``CreateModel`` / ``CreateEndpointConfig`` /
    ``CreateEndpoint`` arguments, extracts ``model.tar.gz`` into ``/opt/ml/model``, runs
    our image with ``serve`` under docker compose on ``port`` and waits for ``/ping``.
    Stop it with :func:`stop_local_endpoint`.
    """
    from ncf_launch.train import local_session

    check_name(options.endpoint_name, "--endpoint-name")
    if not options.model_data:
        raise LaunchError(
            "--local needs --model-data file:///.../model.tar.gz (from ncf train --local)"
        )
    import tempfile
    from pathlib import Path

    container_root = container_root or Path(tempfile.mkdtemp(prefix="ncf-local-"))
    session = local_session(settings, container_root, port=port)
    client = session.sagemaker_client
    model_name = create_model(
        client, settings, options.model_data, container_environment(options), local=True
    )
    config_name = unique_name(f"{options.endpoint_name}-config")
    client.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {
                "VariantName": VARIANT_NAME,
                "ModelName": model_name,
                "InstanceType": check_instance_type(options.instance_type, local=True),
                "InitialInstanceCount": 1,
            }
        ],
    )
    client.create_endpoint(EndpointName=options.endpoint_name, EndpointConfigName=config_name)
    return session, {
        "endpoint_name": options.endpoint_name,
        "endpoint_config_name": config_name,
        "model_name": model_name,
        "url": f"http://localhost:{port}/invocations",
        "status": client.describe_endpoint(EndpointName=options.endpoint_name)["EndpointStatus"],
    }


def stop_local_endpoint(session: Any, names: dict[str, Any]) -> None:
    """Stop the local serving container and forget the local model and config."""
    import threading

    from ncf_launch.train import remove_local_containers

    client = session.sagemaker_client
    endpoint = client._endpoints.get(names["endpoint_name"])
    if endpoint is not None:
        remove_local_containers(endpoint)
    # The SDK's hosting thread reports the stopped `docker compose up` as a failure; it is not.
    previous_hook = threading.excepthook
    threading.excepthook = lambda hook_args: None
    try:
        client.delete_endpoint(EndpointName=names["endpoint_name"])
        if endpoint is not None and endpoint.container and endpoint.container.container:
            endpoint.container.container.join(timeout=30)
    finally:
        threading.excepthook = previous_hook
    client.delete_endpoint_config(EndpointConfigName=names["endpoint_config_name"])
    client.delete_model(ModelName=names["model_name"])
