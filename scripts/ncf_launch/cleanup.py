"""``ncf cleanup`` and ``ncf list``: delete an endpoint with its config and model; list by tag.

Everything the commands create carries the tag ``project=ncf-sagemaker``; the
Resource Groups Tagging API finds it in one paginated call per region.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from botocore.exceptions import ClientError

from ncf_launch import PROJECT_TAG_KEY, PROJECT_TAG_VALUE
from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.hosting import deregister_autoscaling
from ncf_launch.names import check_name
from ncf_launch.settings import Settings


def run_cleanup(settings: Settings, endpoint_name: str, keep_model: bool = False) -> dict[str, Any]:
    """Delete the endpoint, its endpoint config and the models behind its variants."""
    check_name(endpoint_name, "--endpoint-name")
    context = AwsContext(settings)
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
    deregister_autoscaling(context, endpoint_name)
    client.delete_endpoint(EndpointName=endpoint_name)
    deleted["endpoint"] = endpoint_name
    client.delete_endpoint_config(EndpointConfigName=config_name)
    deleted["endpoint_config"] = config_name
    if not keep_model:
        for model_name in models:
            client.delete_model(ModelName=model_name)
            deleted["models"].append(model_name)
    if context.dry_run:
        return context.dry_run_result()
    return {"deleted": deleted}


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
