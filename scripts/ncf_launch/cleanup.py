"""``ncf cleanup`` and ``ncf list``: delete an endpoint with its config and model; list by tag.

Everything the commands create carries the tag ``project=ncf-sagemaker``; the
Resource Groups Tagging API finds it in one paginated call per region.
``cleanup`` also deletes this project's orphans: endpoint configs no endpoint
runs (left by a rolled-back update, or by a deploy interrupted before its
endpoint existed) and models that no endpoint and no running batch job uses
(``ncf batch`` makes one per job).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from botocore.exceptions import ClientError

from ncf_launch import PROJECT_TAG_KEY, PROJECT_TAG_VALUE
from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.hosting import deregister_autoscaling, read_autoscaling
from ncf_launch.names import check_name
from ncf_launch.settings import Settings


def project_resources(context: AwsContext, resource_type: str) -> list[str]:
    """ARNs of this project's resources of one type, e.g. ``sagemaker:model``."""
    tagging = context.client("resourcegroupstaggingapi")
    return [
        mapping["ResourceARN"]
        for page in tagging.get_paginator("get_resources").paginate(
            TagFilters=[{"Key": PROJECT_TAG_KEY, "Values": [PROJECT_TAG_VALUE]}],
            ResourceTypeFilters=[resource_type],
        )
        for mapping in page.get("ResourceTagMappingList", [])
    ]


def name_of(arn: str) -> str:
    """``arn:aws:sagemaker:region:account:model/name`` -> ``name``."""
    return arn.split("/", 1)[1]


def configs_and_models_in_use(client: Any) -> tuple[set[str], set[str]]:
    """Endpoint configs in use and models in use, lower-cased as SageMaker writes them in ARNs.

    A config is in use when an endpoint runs it or is moving to it; a model, when
    such a config or a running batch job names it.
    """
    configs: set[str] = set()
    for page in client.get_paginator("list_endpoints").paginate():
        for summary in page.get("Endpoints", []):
            endpoint = client.describe_endpoint(EndpointName=summary["EndpointName"])
            configs.add(endpoint["EndpointConfigName"])
            pending = endpoint.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
            if pending:
                configs.add(pending)
    models: set[str] = set()
    for config_name in configs:
        config = client.describe_endpoint_config(EndpointConfigName=config_name)
        models.update(variant["ModelName"] for variant in config["ProductionVariants"])
    for page in client.get_paginator("list_transform_jobs").paginate(StatusEquals="InProgress"):
        for summary in page.get("TransformJobSummaries", []):
            job = client.describe_transform_job(TransformJobName=summary["TransformJobName"])
            models.add(job["ModelName"])
    return {name.lower() for name in configs}, {name.lower() for name in models}


def remove_orphans(context: AwsContext, keep_models: bool = False) -> dict[str, list[str]]:
    """Delete this project's endpoint configs (and models, unless kept) that nothing uses."""
    client = context.client("sagemaker")
    configs_in_use, models_in_use = configs_and_models_in_use(client)
    deleted: dict[str, list[str]] = {"endpoint_configs": [], "models": []}
    for arn in project_resources(context, "sagemaker:endpoint-config"):
        if name_of(arn) not in configs_in_use:
            client.delete_endpoint_config(EndpointConfigName=name_of(arn))
            deleted["endpoint_configs"].append(name_of(arn))
    for arn in [] if keep_models else project_resources(context, "sagemaker:model"):
        if name_of(arn) not in models_in_use:
            client.delete_model(ModelName=name_of(arn))
            deleted["models"].append(name_of(arn))
    return deleted


def run_cleanup(
    settings: Settings,
    endpoint_name: str,
    keep_model: bool = False,
    orphans_only: bool = False,
) -> dict[str, Any]:
    """Delete the endpoint, its endpoint config and models, then this project's orphans."""
    check_name(endpoint_name, "--endpoint-name")
    context = AwsContext(settings)
    if orphans_only:
        orphans = remove_orphans(context, keep_models=keep_model)
        return context.dry_run_result() if context.dry_run else {"orphans": orphans}
    client = context.client("sagemaker")
    deleted: dict[str, Any] = {"endpoint": None, "endpoint_config": None, "models": []}
    try:
        endpoint = client.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if not context.dry_run:
            raise LaunchError(f"endpoint {endpoint_name}: {error}") from error
        endpoint = {"EndpointConfigName": f"<config of {endpoint_name}>"}
    config_name = endpoint["EndpointConfigName"]
    models: list[str] = []
    try:
        config = client.describe_endpoint_config(EndpointConfigName=config_name)
        models = [variant["ModelName"] for variant in config["ProductionVariants"]]
    except ClientError:
        if not context.dry_run:
            raise
    if read_autoscaling(context, endpoint_name) is not None:
        deregister_autoscaling(context, endpoint_name)
    client.delete_endpoint(EndpointName=endpoint_name)
    deleted["endpoint"] = endpoint_name
    client.delete_endpoint_config(EndpointConfigName=config_name)
    deleted["endpoint_config"] = config_name
    if not keep_model:
        for model_name in models:
            client.delete_model(ModelName=model_name)
            deleted["models"].append(model_name)
    orphans = remove_orphans(context, keep_models=keep_model)
    if context.dry_run:
        return context.dry_run_result()
    return {"deleted": deleted, "orphans": orphans}


def run_list(settings: Settings) -> dict[str, Any]:
    """ARNs of everything tagged ``project=ncf-sagemaker`` in the region, by resource type."""
    context = AwsContext(settings)
    tagging = context.client("resourcegroupstaggingapi")
    grouped: dict[str, list[str]] = defaultdict(list)
    for page in tagging.get_paginator("get_resources").paginate(
        TagFilters=[{"Key": PROJECT_TAG_KEY, "Values": [PROJECT_TAG_VALUE]}],
        ResourceTypeFilters=["sagemaker", "ecr"],
    ):
        for mapping in page.get("ResourceTagMappingList", []):
            arn = mapping["ResourceARN"]
            # arn:aws:sagemaker:region:account:endpoint/name -> "sagemaker:endpoint"
            service, resource = arn.split(":")[2], arn.split(":", 5)[5]
            grouped[f"{service}:{resource.split('/')[0]}"].append(arn)
    if context.dry_run:
        return context.dry_run_result()
    return dict(grouped)
