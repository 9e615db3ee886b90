"""``ncf deploy``: a real-time endpoint from a model artifact or the latest training job.

Hosting is three plain API resources — Model, EndpointConfig, Endpoint — so the
requests are built with boto3 shapes in :mod:`ncf_launch.api_requests` (the
same dicts go to SageMaker or, with ``--local``, to the SDK's local-mode client
in :mod:`ncf_launch.local`).

An existing endpoint is updated in place: a new model and endpoint config, then
``UpdateEndpoint``, which SageMaker rolls out blue/green — the old fleet keeps
serving until the new one passes its health checks, so there is no downtime.
When the new fleet fails, SageMaker rolls back: the endpoint is InService again
on the *old* config, with a FailureReason, so success is judged by the config
the endpoint runs, not by its status. Autoscaling (target tracking on
``SageMakerVariantInvocationsPerInstance``) is deregistered before such an
update, as AWS requires when the instance type may change, and registered
again on every way out: the new settings after a successful update that asked
for them, the old ones otherwise (also after a failure or a rollback). After a
successful update the previous endpoint config and its model are deleted when
this project made them (tag ``project=ncf-sagemaker``).
"""

from __future__ import annotations

from typing import Any

from ncf_launch.api_requests import (
    create_endpoint_config_request,
    create_endpoint_request,
    update_endpoint_request,
)
from ncf_launch.aws import AwsContext
from ncf_launch.errors import JobEndedError, LaunchError
from ncf_launch.hosting import (
    AutoscalingSetup,
    create_model_for,
    delete_config_and_models,
    deregister_autoscaling,
    describe_endpoint_or_none,
    read_autoscaling,
    register_autoscaling,
    restore_autoscaling,
    wait_for_endpoint,
)
from ncf_launch.names import check_instance_type, check_name, is_gpu, unique_name
from ncf_launch.options import DeployOptions
from ncf_launch.settings import Settings

#: What ``instance_type`` says for a serverless endpoint (no instances; the CPU image).
SERVERLESS = "serverless"


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


def update_in_place(
    context: AwsContext,
    options: DeployOptions,
    config_name: str,
    previous_config: str,
    autoscaling: AutoscalingSetup | None,
    wait: bool,
) -> dict[str, Any]:
    """``UpdateEndpoint`` to ``config_name``; autoscaling comes back on every way out.

    Returns:
        ``status`` and, after a successful wait, ``deleted`` (the previous config and model).

    Raises:
        JobEndedError: The update failed or was rolled back (the endpoint still runs
            ``previous_config``), with SageMaker's FailureReason.
    """
    client = context.client("sagemaker")
    name = options.endpoint_name
    if autoscaling is not None:
        deregister_autoscaling(context, name)
    registered_new = False
    try:
        client.update_endpoint(**update_endpoint_request(name, config_name, options))
        if not wait or context.dry_run:
            if options.autoscale:
                register_autoscaling(context, name, options)  # shown by --dry-run
                registered_new = True
            return {"status": "Updating", "deleted": []}
        print(f"waiting for endpoint {name} to be InService ...", flush=True)
        description = wait_for_endpoint(client, name)
        if description["EndpointConfigName"] != config_name:
            raise JobEndedError(
                "endpoint update",
                name,
                f"rolled back to {description['EndpointConfigName']}",
                description.get("FailureReason"),
            )
        if options.autoscale:
            register_autoscaling(context, name, options)
            registered_new = True
        deleted = delete_config_and_models(client, previous_config)
        return {"status": description["EndpointStatus"], "deleted": deleted}
    finally:
        if autoscaling is not None and not registered_new:
            restore_autoscaling(context, autoscaling)


def run_deploy(settings: Settings, options: DeployOptions, wait: bool = True) -> dict[str, Any]:
    """Create or update the endpoint; returns names and, with ``wait``, its status."""
    check_name(options.endpoint_name, "--endpoint-name")
    options.check()
    # A serverless endpoint runs on CPUs: the CPU image flavour.
    instance_type = (
        SERVERLESS
        if options.serverless is not None
        else check_instance_type(options.instance_type, local=settings.local)
    )
    settings.require_image_uri()
    check_autoscaling(options, wait, settings.dry_run)
    if settings.local:
        raise LaunchError("use ncf_launch.local.run_local_deploy for --local")
    settings.require_role_arn()
    context = AwsContext(settings)
    client = context.client("sagemaker")
    existing = describe_endpoint_or_none(client, options.endpoint_name)
    autoscaling = None if existing is None else read_autoscaling(context, options.endpoint_name)
    if autoscaling is not None and not wait:
        raise LaunchError(
            f"endpoint {options.endpoint_name} has autoscaling, which is registered again once "
            "the update is done: drop --no-wait"
        )
    model_name, model_data = create_model_for(
        context, settings, options, options.container_environment(), instance_type
    )
    config_name = unique_name(f"{options.endpoint_name}-config")
    client.create_endpoint_config(
        **create_endpoint_config_request(
            config_name, model_name, instance_type, options, tags=settings.boto_tags()
        )
    )
    deleted: list[str] = []
    if existing is not None:
        update = update_in_place(
            context, options, config_name, existing["EndpointConfigName"], autoscaling, wait
        )
        status, deleted = update["status"], update["deleted"]
    else:
        client.create_endpoint(
            **create_endpoint_request(options.endpoint_name, config_name, settings.boto_tags())
        )
        if options.traffic_shifting is not None:
            print(
                "note: --canary/--linear/--rollback-alarm apply to updates; this deploy "
                "created the endpoint",
                flush=True,
            )
        status = "Creating"
        if wait and not context.dry_run:
            print(f"waiting for endpoint {options.endpoint_name} to be InService ...", flush=True)
            status = wait_for_endpoint(client, options.endpoint_name)["EndpointStatus"]
        if options.autoscale:
            register_autoscaling(context, options.endpoint_name, options)
    if context.dry_run:
        return context.dry_run_result()
    return {
        "endpoint_name": options.endpoint_name,
        "endpoint_config_name": config_name,
        "model_name": model_name,
        "model_data": model_data,
        "instance_type": instance_type,
        "gpu": is_gpu(instance_type),
        "action": "update" if existing is not None else "create",
        "status": status,
        "autoscaling": options.autoscale,
        "deleted": deleted,
    }
