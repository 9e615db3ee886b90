"""``ncf batch``: a batch transform over JSON Lines in S3, one output line per input line.

``SplitType=Line`` hands the container whole lines, ``AssembleWith=Line`` joins
the answers with newlines, and the container (issue 3) answers JSON Lines with
exactly one line per input line, in order — so ``x.jsonl.out`` lines up with
``x.jsonl``. ``MultiRecord`` packs many lines into one request (up to
``MaxPayloadInMB``), which the server scores as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ncf_launch.aws import AwsContext
from ncf_launch.deploy import (
    DeployOptions,
    check_instance_type,
    container_environment,
    create_model,
    resolve_model_data,
    unique_name,
)
from ncf_launch.errors import LaunchError
from ncf_launch.settings import Settings, check_s3_uri

JSON_LINES = "application/jsonlines"


@dataclass
class BatchOptions:
    """What one transform job needs beyond the shared settings."""

    input_uri: str
    output_uri: str | None = None
    model_name: str | None = None
    model_data: str | None = None
    training_job: str | None = None
    instance_type: str = "ml.c5.xlarge"
    instance_count: int = 1
    batch_strategy: str = "MultiRecord"
    max_payload_mb: int = 6
    max_concurrent_transforms: int | None = None


def run_batch(settings: Settings, options: BatchOptions, wait: bool = True) -> dict[str, Any]:
    """Create the transform job (and a model for it unless ``--model-name`` names one)."""
    if settings.local:
        raise LaunchError("batch transform runs on SageMaker; rehearse with `ncf deploy --local`")
    check_s3_uri(options.input_uri, "--input")
    if options.batch_strategy not in ("MultiRecord", "SingleRecord"):
        raise LaunchError("--batch-strategy must be MultiRecord or SingleRecord")
    instance_type = check_instance_type(options.instance_type)
    context = AwsContext(settings)
    client = context.client("sagemaker")
    output_uri = options.output_uri or settings.s3_uri("batch-output")
    check_s3_uri(output_uri, "--output")
    model_name = options.model_name
    if not model_name:
        settings.require_image_uri()
        settings.require_role_arn()
        model_data = resolve_model_data(context, options.model_data, options.training_job)
        model_name = create_model(
            client, settings, model_data, container_environment(DeployOptions()), local=False
        )
    job_name = unique_name("ncf-batch")
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
        "Tags": settings.boto_tags(),
    }
    if options.max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = options.max_concurrent_transforms
    client.create_transform_job(**request)
    if context.recorder is not None:
        return context.dry_run_result()
    status = "InProgress"
    if wait:
        print(f"waiting for transform job {job_name} ...", flush=True)
        client.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=job_name, WaiterConfig={"Delay": 30, "MaxAttempts": 240}
        )
        description = client.describe_transform_job(TransformJobName=job_name)
        status = description["TransformJobStatus"]
        if status != "Completed":
            raise LaunchError(
                f"transform job {job_name} {status}: {description.get('FailureReason')}"
            )
    return {
        "transform_job_name": job_name,
        "model_name": model_name,
        "output": output_uri,
        "status": status,
    }
