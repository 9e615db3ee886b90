"""``ncf train``: a SageMaker training job with our image, through the SDK v3 ``ModelTrainer``.

The role is always passed and ``source_code`` never is, so SageMaker runs the
image's own ``train`` (no SDK driver scripts are injected). Channels are built
as ``Channel`` objects so each carries the chosen input mode (File or
FastFile); ``InputData`` would pin every channel to File.

The same ``ModelTrainer`` builds the request for ``ncf tune`` and for
``--local`` (:mod:`ncf_launch.local`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from sagemaker.core.helper.iam_role_resolver import RoleValidationError
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.resources import TrainingJob
from sagemaker.core.shapes import Channel, DataSource, MetricDefinition, S3DataSource, Tag
from sagemaker.core.training.configs import (
    CheckpointConfig,
    Compute,
    Networking,
    OutputDataConfig,
    StoppingCondition,
)
from sagemaker.core.utils.exceptions import FailedStatusError
from sagemaker.train.model_trainer import Mode, ModelTrainer

from ncf_contract.metric_lines import METRIC_DEFINITIONS
from ncf_launch import sdk
from ncf_launch.aws import AwsContext
from ncf_launch.errors import JobEndedError, LaunchError
from ncf_launch.jobs import describe_training_job
from ncf_launch.names import check_instance_type, image_for_instance_type, unique_name
from ncf_launch.options import TrainOptions
from ncf_launch.settings import Settings

#: Where SageMaker syncs the checkpoint prefix inside the container.
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
#: Seconds between status polls while following a job.
POLL_SECONDS = 10


def hyperparameters_as_strings(values: dict[str, Any]) -> dict[str, str]:
    """SageMaker hyperparameters are strings: keep strings, JSON-encode everything else."""
    return {
        name: value if isinstance(value, str) else json.dumps(value)
        for name, value in values.items()
    }


def metric_definitions() -> list[MetricDefinition]:
    """The training package's metric regexes as SDK ``MetricDefinition`` objects."""
    return [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in METRIC_DEFINITIONS]


def build_channels(options: TrainOptions) -> list[Channel]:
    """One ``Channel`` per data location, S3 prefix, in the chosen mode.

    Only the train channel is sharded with ``--s3-distribution ShardedByS3Key``: every
    instance needs the whole validation and test data to evaluate the same model.
    """
    return [
        Channel(
            channel_name=name,
            data_source=DataSource(
                s3_data_source=S3DataSource(
                    s3_data_type="S3Prefix",
                    s3_uri=uri,
                    s3_data_distribution_type=(
                        options.s3_distribution if name == "train" else "FullyReplicated"
                    ),
                )
            ),
            input_mode=options.input_mode,
        )
        for name, uri in options.channels.items()
    ]


def build_trainer(
    settings: Settings,
    options: TrainOptions,
    context: AwsContext | None,
    checkpoint_run: str | None = None,
) -> ModelTrainer:
    """A configured ``ModelTrainer`` (cloud mode with ``context``, local container mode without).

    ``checkpoint_run`` names the default checkpoint prefix (``ncf tune`` passes its
    tuning job's name); without it each run gets a fresh one.

    Raises:
        LaunchError: A setting is missing or malformed.
    """
    options.check(local=settings.local)
    local = context is None
    instance_type = check_instance_type(options.instance_type, local=local)
    image = image_for_instance_type(settings.require_image_uri(), instance_type)
    output_path = options.output_path or (None if local else settings.s3_uri("output"))
    spot = options.spot and not local
    trainer_arguments: dict[str, Any] = {
        "training_image": image,
        "base_job_name": options.base_job_name,
        "compute": Compute(
            instance_type=instance_type,
            instance_count=options.instance_count,
            volume_size_in_gb=options.volume_size_gb,
            volume_kms_key_id=options.security.volume_kms_key,
            enable_managed_spot_training=True if spot else None,
        ),
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=options.max_runtime_s,
            max_wait_time_in_seconds=(options.max_wait_s or options.max_runtime_s)
            if spot
            else None,
        ),
        "training_input_mode": options.input_mode,
        "hyperparameters": hyperparameters_as_strings(
            {**options.hyperparameters, **options.distribution_hyperparameters()}
        ),
        "environment": dict(options.environment),
        "tags": [Tag(key=key, value=value) for key, value in settings.tags],
        "input_data_config": build_channels(options),
    }
    if output_path:
        trainer_arguments["output_data_config"] = OutputDataConfig(
            s3_output_path=output_path,
            compression_type="GZIP",
            kms_key_id=None if local else options.security.kms_key,
        )
    vpc = options.security.vpc_config()
    if not local and (vpc or options.security.network_isolation):
        trainer_arguments["networking"] = Networking(
            subnets=vpc["Subnets"] if vpc else None,
            security_group_ids=vpc["SecurityGroupIds"] if vpc else None,
            enable_network_isolation=options.security.network_isolation or None,
        )
    if context is None:
        trainer_arguments["training_mode"] = Mode.LOCAL_CONTAINER
    else:
        trainer_arguments["role"] = settings.require_role_arn()
        trainer_arguments["sagemaker_session"] = Session(boto_session=context.boto_session)
        if spot or options.checkpoint_s3_uri:
            trainer_arguments["checkpoint_config"] = CheckpointConfig(
                # One prefix per run by default: a new run must not resume an old one.
                # (Spot restarts of the same job reuse it; pass the URI to resume on purpose.)
                s3_uri=options.checkpoint_s3_uri
                or settings.s3_uri(
                    "checkpoints", checkpoint_run or unique_name(options.base_job_name)
                ),
                local_path=CHECKPOINT_LOCAL_PATH,
            )
    with role_check_refusals(settings):
        trainer = ModelTrainer(**trainer_arguments)
    return trainer.with_metric_definitions(metric_definitions())


def announce(kind: str, name: str, region: str, follow_command: str) -> None:
    """Say on stderr which job started, and how to follow or stop it from another shell."""
    print(
        f"{kind} {name} started in {region} (`ncf {follow_command} {name}`, `ncf stop {name}`)",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def role_check_refusals(settings: Settings) -> Iterator[None]:
    """Turn the SDK's role-check refusal into a one-line ``LaunchError``.

    The SDK simulates the role's IAM policies when a ``ModelTrainer`` is built (and
    treats roles without VPC, ECR or CloudWatch permissions as denied, even for jobs
    that need none of them); its message is a multi-line traceback text that never
    names our way out.

    Raises:
        LaunchError: The SDK's IAM simulation denied the role.
    """
    try:
        yield
    except RoleValidationError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        missing = next((line for line in lines if line.startswith("Missing permissions")), "")
        detail = f" ({missing})" if missing else ""
        raise LaunchError(
            f"the SageMaker SDK's role check refused {settings.role_arn}{detail}; if the role "
            "works (the check simulates permissions this job may not need), pass "
            "--skip-role-check"
        ) from error


def follow_training_job(context: AwsContext, job_name: str) -> dict[str, Any]:
    """Stream the job's CloudWatch logs until it ends; report it, or raise if it did not complete.

    Raises:
        JobEndedError: The job ended Failed or Stopped (with its FailureReason).
    """
    sdk.route_job_logs(context.client("logs"))
    job = TrainingJob.get(training_job_name=job_name, session=context.boto_session)
    try:
        job.wait(poll=POLL_SECONDS, logs=True)
    except FailedStatusError:
        pass  # reported below, from the job's own description
    except KeyboardInterrupt:
        print(
            f"\nstopped following {job_name}; it keeps running (and billing): "
            f"`ncf logs {job_name}` follows it again, `ncf stop {job_name}` stops it",
            file=sys.stderr,
            flush=True,
        )
        raise
    result = describe_training_job(context.client("sagemaker"), job_name)
    if result["status"] != "Completed":
        raise JobEndedError("training job", job_name, result["status"], result["failure_reason"])
    return result


def run_train(settings: Settings, options: TrainOptions, wait: bool = True) -> dict[str, Any]:
    """Start the job, say its name; with ``wait``, stream its logs until it ends and report it.

    Raises:
        JobEndedError: With ``wait``, the job ended Failed or Stopped.
    """
    context = AwsContext(settings)
    trainer = build_trainer(settings, options, context)
    with role_check_refusals(settings):
        trainer.train(wait=False, logs=False)
    if context.dry_run:
        return context.dry_run_result()
    job_name = sdk.latest_training_job(trainer).training_job_name
    announce("training job", job_name, settings.region, "logs")
    if not wait:
        return {"training_job_name": job_name, "status": "InProgress"}
    return follow_training_job(context, job_name)
