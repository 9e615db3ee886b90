"""``ncf deploy``: a real-time endpoint from a model artifact or the latest training job.

Hosting is three plain API resources — Model, EndpointConfig, Endpoint — so the
requests are built with boto3 shapes in :mod:`ncf_launch.api_requests` (the
same dicts go to SageMaker or, with ``--local``, to the SDK's local-mode client
in :mod:`ncf_launch.local`).

An existing endpoint is updated in place: a new model and endpoint config, then
``UpdateEndpoint``, which SageMaker rolls out blue/green — the old fleet keeps
serving until the new one passes its health checks, so there is no downtime.
Autoscaling (target tracking on ``SageMakerVariantInvocationsPerInstance``) is
deregistered before such an update and registered again after it, as AWS
requires when the instance type may change.
"""

from __future__ import annotations

from typing import Any

from ncf_launch.api_requests import (
    create_endpoint_config_request,
    create_endpoint_request,
    update_endpoint_request,
)
from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.hosting import (
    create_model,
    deregister_autoscaling,
    endpoint_exists,
    register_autoscaling,
    resolve_model_data,
)
from ncf_launch.names import check_instance_type, check_name, is_gpu, unique_name
from ncf_launch.options import DeployOptions
from ncf_launch.settings import Settings


def check_autoscaling(options: DeployOptions, wait: bool, dry_run: bool) -> None:
    """Reject an incomplete or impossible autoscaling request before any call.

    Raises:
        LaunchError: Only one bound, bounds out of order, or ``--no-wait``.
    """
    if not options.autoscale:
        return
    if options.autoscale_min is None or options.autoscale_max is None:
        raise LaunchError("autoscaling needs both --autoscale-min and --autoscale-max")
    if not 1 <= options.autoscale_min <= options.autoscale_max:
        raise LaunchError("autoscaling needs 1 <= --autoscale-min <= --autoscale-max")
    if not wait and not dry_run:
        raise LaunchError(
            "autoscaling is registered once the endpoint is InService: drop --no-wait"
        )


def run_deploy(settings: Settings, options: DeployOptions, wait: bool = True) -> dict[str, Any]:
    """Create or update the endpoint; returns names and, with ``wait``, its status."""
    check_name(options.endpoint_name, "--endpoint-name")
    options.check()
    instance_type = check_instance_type(options.instance_type, local=settings.local)
    settings.require_image_uri()
    check_autoscaling(options, wait, settings.dry_run)
    if settings.local:
        raise LaunchError("use ncf_launch.local.run_local_deploy for --local")
    settings.require_role_arn()
    context = AwsContext(settings)
    client = context.client("sagemaker")
    model_data = resolve_model_data(context, options.model_data, options.training_job)
    model_name = create_model(
        client,
        settings,
        model_data,
        options.container_environment(),
        instance_type,
        local=False,
    )
    config_name = unique_name(f"{options.endpoint_name}-config")
    client.create_endpoint_config(
        **create_endpoint_config_request(
            config_name, model_name, instance_type, options, tags=settings.boto_tags()
        )
    )
    updating = endpoint_exists(client, options.endpoint_name)
    had_autoscaling = False
    if updating:
        had_autoscaling = deregister_autoscaling(context, options.endpoint_name)
        client.update_endpoint(**update_endpoint_request(options.endpoint_name, config_name))
    else:
        client.create_endpoint(
            **create_endpoint_request(options.endpoint_name, config_name, settings.boto_tags())
        )
    dry_run = context.recorder is not None
    status = "Updating" if updating else "Creating"
    if wait and not dry_run:
        print(f"waiting for endpoint {options.endpoint_name} to be InService ...", flush=True)
        client.get_waiter("endpoint_in_service").wait(
            EndpointName=options.endpoint_name, WaiterConfig={"Delay": 30, "MaxAttempts": 120}
        )
        status = client.describe_endpoint(EndpointName=options.endpoint_name)["EndpointStatus"]
    if options.autoscale:
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
        "autoscaling": options.autoscale,
    }
