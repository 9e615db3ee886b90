"""``ncf train``: a SageMaker training job with our image, through the SDK v3 ``ModelTrainer``.

The role is always passed and ``source_code`` never is, so SageMaker runs the
image's own ``train`` (no SDK driver scripts are injected). Channels are built
as ``Channel`` objects so each carries the chosen input mode (File or
FastFile); ``InputData`` would pin every channel to File.

``--local`` sends the same ``CreateTrainingJob`` request (built by the same
``ModelTrainer``) to the SDK's local-mode client (``sagemaker.core.local``),
which writes ``/opt/ml/input/config/*.json``, mounts the channels and runs
``docker compose`` with our image and the ``train`` argument, as SageMaker does.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ncf_launch.aws import AwsContext
from ncf_launch.deploy import unique_name
from ncf_launch.errors import LaunchError
from ncf_launch.settings import Settings, check_s3_uri

CHANNELS = ("train", "validation", "test", "test_negatives")
INPUT_MODES = ("File", "FastFile")
BASE_JOB_NAME = "ncf-train"


@dataclass
class TrainOptions:
    """What one training job needs beyond the shared settings."""

    channels: dict[str, str]
    hyperparameters: dict[str, str] = field(default_factory=dict)
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_s: int = 3600
    spot: bool = False
    max_wait_s: int | None = None
    checkpoint_s3_uri: str | None = None
    input_mode: str = "File"
    base_job_name: str = BASE_JOB_NAME
    environment: dict[str, str] = field(default_factory=dict)
    output_path: str | None = None

    def check(self, local: bool = False) -> None:
        """Reject what SageMaker would reject, before any call.

        Raises:
            LaunchError: Missing ``train`` channel, unknown channel, bad URI or Spot setting.
        """
        if "train" not in self.channels:
            raise LaunchError("the train channel is required: pass --train s3://bucket/prefix/")
        unknown = sorted(set(self.channels) - set(CHANNELS))
        if unknown:
            raise LaunchError(f"unknown channel(s) {unknown}; valid: {list(CHANNELS)}")
        for name, uri in self.channels.items():
            if local and uri.startswith("file://"):
                continue
            check_s3_uri(uri, f"--{name.replace('_', '-')}")
        if self.input_mode not in INPUT_MODES:
            raise LaunchError(f"--input-mode must be one of {INPUT_MODES}, got {self.input_mode!r}")
        if self.spot:
            wait = self.max_wait_s or self.max_runtime_s
            if wait < self.max_runtime_s:
                raise LaunchError(
                    f"--max-wait ({wait} s) must be at least --max-runtime ({self.max_runtime_s} s)"
                )
        if self.checkpoint_s3_uri:
            check_s3_uri(self.checkpoint_s3_uri, "--checkpoint-s3-uri")


def hyperparameters_as_strings(values: dict[str, Any]) -> dict[str, str]:
    """SageMaker hyperparameters are strings: keep strings, JSON-encode everything else."""
    return {
        name: value if isinstance(value, str) else json.dumps(value)
        for name, value in values.items()
    }


def parse_assignments(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """``["epochs=5", "mlp_layers=[64,32]"]`` -> ``{"epochs": 5, "mlp_layers": [64, 32]}``.

    Values are JSON-decoded where they parse, kept as strings otherwise.
    """
    values: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise LaunchError(f"{what}: expected NAME=VALUE, got {pair!r}")
        try:
            values[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[name.strip()] = raw
    return values


def metric_definitions() -> list[Any]:
    """The training package's metric regexes as SDK ``MetricDefinition`` objects."""
    from sagemaker.core.shapes import MetricDefinition

    from training.metric_definitions import METRIC_DEFINITIONS

    return [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in METRIC_DEFINITIONS]


def build_channels(options: TrainOptions) -> list[Any]:
    """One ``Channel`` per data location, S3 prefix, fully replicated, in the chosen mode."""
    from sagemaker.core.shapes import Channel, DataSource, S3DataSource

    return [
        Channel(
            channel_name=name,
            data_source=DataSource(
                s3_data_source=S3DataSource(
                    s3_data_type="S3Prefix",
                    s3_uri=uri,
                    s3_data_distribution_type="FullyReplicated",
                )
            ),
            input_mode=options.input_mode,
        )
        for name, uri in options.channels.items()
    ]


def build_trainer(settings: Settings, options: TrainOptions, context: AwsContext | None) -> Any:
    """A configured ``ModelTrainer`` (cloud mode with ``context``, local container mode without).

    Raises:
        LaunchError: A setting is missing or malformed.
    """
    from sagemaker.core.shapes import Tag
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.train.model_trainer import Mode, ModelTrainer

    options.check(local=settings.local)
    image = settings.require_image_uri()
    local = context is None
    output_path = options.output_path or (None if local else settings.s3_uri("output"))
    spot = options.spot and not local
    trainer_arguments: dict[str, Any] = {
        "training_image": image,
        "base_job_name": options.base_job_name,
        "compute": Compute(
            instance_type="local" if local else options.instance_type,
            instance_count=options.instance_count,
            volume_size_in_gb=options.volume_size_gb,
            enable_managed_spot_training=True if spot else None,
        ),
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=options.max_runtime_s,
            max_wait_time_in_seconds=(options.max_wait_s or options.max_runtime_s)
            if spot
            else None,
        ),
        "training_input_mode": options.input_mode,
        "hyperparameters": hyperparameters_as_strings(options.hyperparameters),
        "environment": dict(options.environment),
        "tags": [Tag(key=key, value=value) for key, value in settings.tags],
        "input_data_config": build_channels(options),
    }
    if output_path:
        trainer_arguments["output_data_config"] = OutputDataConfig(
            s3_output_path=output_path, compression_type="GZIP"
        )
    if local:
        trainer_arguments["training_mode"] = Mode.LOCAL_CONTAINER
    else:
        assert context is not None  # cloud mode always has one
        trainer_arguments["role"] = settings.require_role_arn()
        trainer_arguments["sagemaker_session"] = context.sagemaker_session()
        if spot or options.checkpoint_s3_uri:
            trainer_arguments["checkpoint_config"] = CheckpointConfig(
                # One prefix per run by default: a new run must not resume an old one.
                # (Spot restarts of the same job reuse it; pass the URI to resume on purpose.)
                s3_uri=options.checkpoint_s3_uri
                or settings.s3_uri("checkpoints", unique_name(options.base_job_name)),
                local_path="/opt/ml/checkpoints",
            )
    trainer = ModelTrainer(**trainer_arguments)
    return trainer.with_metric_definitions(metric_definitions())


def describe_result(context: AwsContext, job_name: str) -> dict[str, Any]:
    """Status, final metrics and model artifact of a training job."""
    description = context.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    return {
        "training_job_name": job_name,
        "status": description.get("TrainingJobStatus"),
        "failure_reason": description.get("FailureReason"),
        "final_metrics": {
            metric["MetricName"]: metric["Value"]
            for metric in description.get("FinalMetricDataList", [])
        },
        "model_artifact": description.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "billable_seconds": description.get("BillableTimeInSeconds"),
    }


def run_train(settings: Settings, options: TrainOptions, wait: bool = True) -> dict[str, Any]:
    """Start the job; with ``wait``, stream its logs until it ends and report the result."""
    if settings.local:
        return run_local_train(settings, options)
    context = AwsContext(settings)
    trainer = build_trainer(settings, options, context)
    if context.recorder is not None:
        wait = False
    trainer.train(wait=wait, logs=wait)
    job_name = trainer._latest_training_job.training_job_name  # the SDK's documented handle
    if context.recorder is not None:
        return context.dry_run_result()
    if not wait:
        return {"training_job_name": job_name, "status": "InProgress"}
    return describe_result(context, job_name)


def local_session(settings: Settings, container_root: Path | None = None, port: int = 8080) -> Any:
    """The SDK's ``LocalSession``: SageMaker's API implemented with docker compose."""
    import boto3
    from sagemaker.core.local.local_session import LocalSession

    boto_session = boto3.Session(region_name=settings.region or "us-east-1")
    session = LocalSession(boto_session=boto_session)
    local_config: dict[str, Any] = {"local_code": True, "serving_port": port}
    if container_root is not None:
        container_root.mkdir(parents=True, exist_ok=True)
        local_config["container_root"] = str(container_root)
    session.config = {"local": local_config}
    return session


def to_local_channel_uris(channels: dict[str, str]) -> dict[str, str]:
    """Local folders become ``file://`` URIs; ``file://`` and ``s3://`` stay as they are."""
    converted = {}
    for name, uri in channels.items():
        if "://" in uri:
            converted[name] = uri
            continue
        path = Path(uri).resolve()
        if not path.exists():
            raise LaunchError(f"--{name.replace('_', '-')}: {path} does not exist")
        converted[name] = f"file://{path}"
    return converted


def run_local_train(
    settings: Settings, options: TrainOptions, container_root: Path | None = None
) -> dict[str, Any]:
    """Train with SageMaker local mode on Docker; the model lands in ``--output-path``."""
    options.channels = to_local_channel_uris(options.channels)
    output_dir = Path(
        urlparse(options.output_path).path if options.output_path else "local/output"
    ).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    options.output_path = f"file://{output_dir}"
    trainer = build_trainer(settings, options, context=None)
    request = trainer._create_training_job_args(boto3=True)  # the exact CreateTrainingJob request
    request.pop("Tags", None)  # the local client does not take tags
    container_root = container_root or Path(tempfile.mkdtemp(prefix="ncf-local-"))
    session = local_session(settings, container_root)
    started = time.monotonic()
    try:
        session.sagemaker_client.create_training_job(**request)
    except RuntimeError as error:  # the SDK's "docker compose exited with code N"
        raise LaunchError(
            f"local training job {request['TrainingJobName']} failed: "
            f"{local_failure_reason(output_dir) or error} (container log above)"
        ) from error
    finally:
        compose_down_under(container_root)
    description = session.sagemaker_client.describe_training_job(
        TrainingJobName=request["TrainingJobName"]
    )
    return {
        "training_job_name": request["TrainingJobName"],
        "status": description["TrainingJobStatus"],
        "model_artifact": description["ModelArtifacts"]["S3ModelArtifacts"],
        "seconds": round(time.monotonic() - started, 1),
    }


def local_failure_reason(output_dir: Path) -> str | None:
    """The first line of ``output/failure`` from the ``output.tar.gz`` local mode packed."""
    import tarfile

    archive_path = output_dir / "output.tar.gz"
    if not archive_path.is_file():
        return None
    with tarfile.open(archive_path) as archive:
        for member in archive.getmembers():
            if Path(member.name).name == "failure" and member.isfile():
                handle = archive.extractfile(member)
                text = handle.read().decode("utf-8", errors="replace") if handle else ""
                return text.strip().splitlines()[0] if text.strip() else None
    return None


def compose_down(compose_file: Path) -> None:
    """``docker compose down`` for one local-mode project.

    SageMaker removes its instances after a job; the SDK's local mode leaves the
    exited containers behind, so this does what SageMaker would.
    """
    import subprocess

    from sagemaker.core.local.image import _SageMakerContainer

    if compose_file.is_file():
        subprocess.run(
            [*_SageMakerContainer._get_compose_cmd_prefix(), "-f", str(compose_file), "down"],
            capture_output=True,
            check=False,
            timeout=120,
        )


def compose_down_under(root: Path) -> None:
    """``docker compose down`` for every local-mode project the SDK made under ``root``."""
    for compose_file in Path(root).glob("*/docker-compose.yaml"):
        compose_down(compose_file)


def remove_local_containers(local_job: Any) -> None:
    """``docker compose down`` for a running local endpoint or a finished job."""
    container = getattr(local_job, "container", None)
    root = getattr(container, "container_root", None)
    if root:
        compose_down(Path(root) / "docker-compose.yaml")
