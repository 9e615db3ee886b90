"""``ncf batch``: a batch transform over JSON Lines in S3, one output line per input line.

``SplitType=Line`` hands the container whole lines, ``AssembleWith=Line`` joins
the answers with newlines, and the container (issue 3) answers JSON Lines with
exactly one line per input line, in order — so ``x.jsonl.out`` lines up with
``x.jsonl``. ``MultiRecord`` packs many lines into one request (up to
``MaxPayloadInMB``), which the server scores as one batch.
"""

from __future__ import annotations

from typing import Any

from ncf_launch.api_requests import create_transform_job_request
from ncf_launch.aws import AwsContext
from ncf_launch.errors import JobEndedError, LaunchError
from ncf_launch.hosting import create_model_for, wait_for
from ncf_launch.names import check_instance_type, unique_name
from ncf_launch.options import BATCH_BASE_JOB_NAME, BATCH_STRATEGIES, BatchOptions, DeployOptions
from ncf_launch.settings import Settings, check_s3_uri


def run_batch(settings: Settings, options: BatchOptions, wait: bool = True) -> dict[str, Any]:
    """Create the transform job (and a model for it unless ``--model-name`` names one).

    Raises:
        JobEndedError: With ``wait``, the job ended Failed or Stopped (with its FailureReason).
    """
    if settings.local:
        raise LaunchError("batch transform runs on SageMaker; rehearse with `ncf deploy --local`")
    check_s3_uri(options.input_uri, "--input")
    options.check()
    if options.batch_strategy not in BATCH_STRATEGIES:
        raise LaunchError(f"--batch-strategy must be one of {BATCH_STRATEGIES}")
    instance_type = check_instance_type(options.instance_type)
    context = AwsContext(settings)
    client = context.client("sagemaker")
    output_uri = options.output_uri or settings.s3_uri("batch-output")
    check_s3_uri(output_uri, "--output")
    model_name = options.model_name
    if not model_name:
        settings.require_image_uri()
        settings.require_role_arn()
        model_name, _ = create_model_for(
            context, settings, options, DeployOptions().container_environment(), instance_type
        )
    job_name = unique_name(BATCH_BASE_JOB_NAME)
    client.create_transform_job(
        **create_transform_job_request(
            job_name, model_name, instance_type, output_uri, options, settings.boto_tags()
        )
    )
    if context.dry_run:
        return context.dry_run_result()
    status = "InProgress"
    if wait:
        print(f"waiting for transform job {job_name} ...", flush=True)
        wait_for(
            client,
            "transform_job_completed_or_stopped",
            TransformJobName=job_name,
            WaiterConfig={"Delay": 30, "MaxAttempts": 240},
        )
        description = client.describe_transform_job(TransformJobName=job_name)
        status = description["TransformJobStatus"]
        if status != "Completed":
            raise JobEndedError("transform job", job_name, status, description.get("FailureReason"))
    return {
        "transform_job_name": job_name,
        "model_name": model_name,
        "output": output_uri,
        "status": status,
    }
