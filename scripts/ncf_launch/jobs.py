"""``ncf describe``, ``ncf stop`` and ``ncf logs``: one job or endpoint, found by its name.

The kind of a name follows from how the launcher names things: ``ncf-train-*``
is a training job, ``ncf-tune-<yymmdd-HHMMSS-mmm>`` a tuning job (its trials,
``ncf-tune-...-NNN-xxxxxxxx``, are training jobs), ``ncf-batch-*`` a transform
job, anything else an endpoint; ``--kind`` says it for names made elsewhere.
Light on purpose (boto3 only), so these commands start in well under a second.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.options import BATCH_BASE_JOB_NAME, TRAIN_BASE_JOB_NAME, TUNE_BASE_JOB_NAME
from ncf_launch.settings import Settings

KINDS = ("training", "tuning", "batch", "endpoint")
STOPPABLE_KINDS = ("training", "tuning", "batch")
LOGGED_KINDS = ("training", "batch", "endpoint")
TUNING_JOB_NAME_PATTERN = re.compile(rf"^{TUNE_BASE_JOB_NAME}-\d{{6}}-\d{{6}}-\d{{3}}$")


def kind_of(name: str, kind: str | None = None) -> str:
    """``kind`` if given, else the kind the launcher's naming implies."""
    if kind:
        return kind
    if TUNING_JOB_NAME_PATTERN.match(name):
        return "tuning"
    if name.startswith((f"{TRAIN_BASE_JOB_NAME}-", f"{TUNE_BASE_JOB_NAME}-")):
        return "training"
    if name.startswith(f"{BATCH_BASE_JOB_NAME}-"):
        return "batch"
    return "endpoint"


def check_kind(kind: str, allowed: tuple[str, ...], command: str, name: str) -> None:
    """Raise a ``LaunchError`` when ``command`` does not apply to ``kind``."""
    if kind not in allowed:
        raise LaunchError(
            f"ncf {command} {name}: {name} looks like an {kind} name; {command} takes "
            f"{', '.join(allowed)} (pass --kind if the name was made outside ncf)"
        )


# --- describe -------------------------------------------------------------------------


def _outcome(
    name_key: str, name: str, description: dict[str, Any], status_key: str
) -> dict[str, Any]:
    """What every description starts with: the name, the status and the FailureReason."""
    return {
        name_key: name,
        "status": description.get(status_key),
        "failure_reason": description.get("FailureReason"),
    }


def describe_training_job(client: Any, name: str) -> dict[str, Any]:
    """Status, FailureReason, final metrics and model artifact of a training job."""
    description = client.describe_training_job(TrainingJobName=name)
    return {
        **_outcome("training_job_name", name, description, "TrainingJobStatus"),
        "final_metrics": {
            metric["MetricName"]: metric["Value"]
            for metric in description.get("FinalMetricDataList", [])
        },
        "model_artifact": description.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "billable_seconds": description.get("BillableTimeInSeconds"),
    }


def describe_tuning_job(client: Any, name: str) -> dict[str, Any]:
    """Status, FailureReason, trial counts and the best training job of a tuning job."""
    description = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    best = description.get("BestTrainingJob", {})
    return {
        **_outcome("tuning_job_name", name, description, "HyperParameterTuningJobStatus"),
        "training_job_counts": description.get("TrainingJobStatusCounters"),
        "best_training_job": best.get("TrainingJobName"),
        "best_objective": best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"),
        "best_hyperparameters": best.get("TunedHyperParameters"),
    }


def describe_transform_job(client: Any, name: str) -> dict[str, Any]:
    """Status, FailureReason, model and output of a batch transform job."""
    description = client.describe_transform_job(TransformJobName=name)
    return {
        **_outcome("transform_job_name", name, description, "TransformJobStatus"),
        "model_name": description.get("ModelName"),
        "output": description.get("TransformOutput", {}).get("S3OutputPath"),
    }


def describe_endpoint(client: Any, name: str) -> dict[str, Any]:
    """Status, FailureReason, config and instance counts of an endpoint."""
    description = client.describe_endpoint(EndpointName=name)
    return {
        **_outcome("endpoint_name", name, description, "EndpointStatus"),
        "endpoint_config_name": description.get("EndpointConfigName"),
        "variants": [
            {
                "variant_name": variant.get("VariantName"),
                "current_instance_count": variant.get("CurrentInstanceCount"),
                "desired_instance_count": variant.get("DesiredInstanceCount"),
            }
            for variant in description.get("ProductionVariants", [])
        ],
    }


DESCRIBERS = {
    "training": describe_training_job,
    "tuning": describe_tuning_job,
    "batch": describe_transform_job,
    "endpoint": describe_endpoint,
}


def run_describe(settings: Settings, name: str, kind: str | None = None) -> dict[str, Any]:
    """``ncf describe NAME``: status, final metrics and FailureReason, as JSON."""
    context = AwsContext(settings)
    try:
        result = DESCRIBERS[kind_of(name, kind)](context.client("sagemaker"), name)
    except ClientError:
        if not context.dry_run:  # a dry run shows the request even though nothing exists
            raise
        result = {}
    return context.dry_run_result() if context.dry_run else result


# --- stop -----------------------------------------------------------------------------


def run_stop(settings: Settings, name: str, kind: str | None = None) -> dict[str, Any]:
    """``ncf stop NAME``: ask SageMaker to stop a training, tuning or batch job."""
    job_kind = kind_of(name, kind)
    check_kind(job_kind, STOPPABLE_KINDS, "stop", name)
    context = AwsContext(settings)
    client = context.client("sagemaker")
    if job_kind == "training":
        client.stop_training_job(TrainingJobName=name)
    elif job_kind == "tuning":
        client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    else:
        client.stop_transform_job(TransformJobName=name)
    if context.dry_run:
        return context.dry_run_result()
    return {"stopping": name, "kind": job_kind}


# --- logs -----------------------------------------------------------------------------


def log_location(kind: str, name: str) -> tuple[str, str]:
    """The CloudWatch log group and stream-name prefix of a job or endpoint."""
    if kind == "training":
        return "/aws/sagemaker/TrainingJobs", f"{name}/"
    if kind == "batch":
        return "/aws/sagemaker/TransformJobs", f"{name}/"
    return f"/aws/sagemaker/Endpoints/{name}", ""


def stream_lines(logs: Any, group: str, stream: str) -> list[str]:
    """Every event of one stream, oldest first (``GetLogEvents`` pages until the token repeats)."""
    lines: list[str] = []
    token: str | None = None
    while True:
        page = logs.get_log_events(
            logGroupName=group,
            logStreamName=stream,
            startFromHead=True,
            **({"nextToken": token} if token else {}),
        )
        lines.extend(event["message"] for event in page.get("events", []))
        if not page.get("events") or page.get("nextForwardToken") in (None, token):
            return lines
        token = page["nextForwardToken"]


def run_logs(settings: Settings, name: str, kind: str | None = None) -> Any:
    """``ncf logs NAME``: the CloudWatch log lines so far, each stream in turn.

    With more than one stream (instances of a job, or of an endpoint), each line
    starts with its stream's last part (``[algo-2-1700000000] ...``).
    """
    job_kind = kind_of(name, kind)
    check_kind(job_kind, LOGGED_KINDS, "logs", name)
    context = AwsContext(settings)
    logs = context.client("logs")
    group, prefix = log_location(job_kind, name)
    streams = [
        stream["logStreamName"]
        for page in logs.get_paginator("describe_log_streams").paginate(
            logGroupName=group,
            **({"logStreamNamePrefix": prefix} if prefix else {}),
            orderBy="LogStreamName",
        )
        for stream in page.get("logStreams", [])
    ]
    output: list[str] = []
    for stream in streams:
        label = f"[{stream.rsplit('/', 1)[-1]}] " if len(streams) > 1 else ""
        output.extend(f"{label}{line}" for line in stream_lines(logs, group, stream))
    if context.dry_run:
        return context.dry_run_result()
    if not streams:
        raise LaunchError(f"no logs yet for {job_kind} {name} in {group}")
    return "\n".join(output)
