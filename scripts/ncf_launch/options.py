"""What each command needs beyond the shared settings, with every default in one place.

The dataclasses here are frozen: a command derives a changed copy with
:func:`dataclasses.replace` instead of editing what it was given. The argument
parser (:mod:`ncf_launch.cli`) reads its defaults from these classes, so a
default is written once. Light on purpose (no AWS SDK), so ``--help`` and the
argument checks stay fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ncf_contract.channels import CHANNELS
from ncf_launch.errors import LaunchError
from ncf_launch.settings import check_s3_uri

INPUT_MODES = ("File", "FastFile")
TUNING_STRATEGIES = ("Bayesian", "Random", "Hyperband")
BATCH_STRATEGIES = ("MultiRecord", "SingleRecord")
S3_DISTRIBUTIONS = ("FullyReplicated", "ShardedByS3Key")
#: The ``distribution`` hyperparameter sent with ``--instance-count`` > 1 (TensorFlow's strategy).
MULTI_WORKER_DISTRIBUTION = "multi_worker_mirrored"
TRAIN_BASE_JOB_NAME = "ncf-train"
TUNE_BASE_JOB_NAME = "ncf-tune"
BATCH_BASE_JOB_NAME = "ncf-batch"
DEFAULT_ENDPOINT_NAME = "ncf-endpoint"
#: Host port of a local-mode endpoint (the container's own port is always 8080).
DEFAULT_LOCAL_PORT = 8080
DEFAULT_TOP_K = 10
#: The search space when no ``--range`` is given: the NCF paper's most sensitive knobs.
DEFAULT_RANGES: dict[str, str] = {
    "learning_rate": "continuous:0.0001:0.01:log",
    "num_negatives": "integer:2:8",
    "batch_size": "categorical:1024|2048|4096",
    "gmf_dim": "categorical:8|16|32|64",
}


def parse_assignments(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """``["epochs=5", "mlp_layers=[64,32]"]`` -> ``{"epochs": 5, "mlp_layers": [64, 32]}``.

    Values are JSON-decoded where they parse, kept as strings otherwise.

    Raises:
        LaunchError: A pair has no ``=`` or no name.
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


def parse_string_assignments(pairs: list[str] | None, what: str) -> dict[str, str]:
    """Like :func:`parse_assignments`, every value as a string (tags, environment variables)."""
    return {name: str(value) for name, value in parse_assignments(pairs, what).items()}


@dataclass(frozen=True)
class SecurityOptions:
    """Network and encryption settings shared by training, hosting and batch jobs."""

    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    network_isolation: bool = False
    #: KMS key for what a job writes to S3 (model artifacts, batch output, captured data).
    kms_key: str | None = None
    #: KMS key for the ML storage volumes of training instances, endpoints and batch jobs.
    volume_kms_key: str | None = None

    def check(self) -> None:
        """Subnets and security groups come together (a VPC needs both).

        Raises:
            LaunchError: Only one of them was given.
        """
        if bool(self.subnets) != bool(self.security_group_ids):
            raise LaunchError(
                "a VPC needs both --subnet and --security-group (each repeatable), or neither"
            )

    def vpc_config(self) -> dict[str, list[str]] | None:
        """``VpcConfig`` in the API's shape, or ``None`` without a VPC."""
        self.check()
        if not self.subnets:
            return None
        return {"Subnets": list(self.subnets), "SecurityGroupIds": list(self.security_group_ids)}


@dataclass(frozen=True)
class TrainOptions:
    """What one training job needs beyond the shared settings."""

    channels: dict[str, str]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_s: int = 3600
    spot: bool = False
    max_wait_s: int | None = None
    checkpoint_s3_uri: str | None = None
    input_mode: str = "File"
    base_job_name: str = TRAIN_BASE_JOB_NAME
    environment: dict[str, str] = field(default_factory=dict)
    output_path: str | None = None
    #: How the train channel is spread over instances (the other channels are replicated).
    s3_distribution: str = "FullyReplicated"
    security: SecurityOptions = field(default_factory=SecurityOptions)

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
        if self.s3_distribution not in S3_DISTRIBUTIONS:
            raise LaunchError(f"--s3-distribution must be one of {S3_DISTRIBUTIONS}")
        if self.instance_count < 1:
            raise LaunchError(f"--instance-count must be at least 1, got {self.instance_count}")
        self.security.check()

    def distribution_hyperparameters(self) -> dict[str, str]:
        """``distribution=multi_worker_mirrored`` when more than one instance trains."""
        return {"distribution": MULTI_WORKER_DISTRIBUTION} if self.instance_count > 1 else {}


@dataclass(frozen=True)
class TuneOptions:
    """A tuning job: the training job it repeats, and the search around it."""

    training: TrainOptions
    ranges: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RANGES))
    max_jobs: int = 8
    max_parallel_jobs: int = 2
    strategy: str = "Bayesian"
    early_stopping: str = "Auto"


@dataclass(frozen=True)
class DeployOptions:
    """What a deployment needs beyond the shared settings."""

    endpoint_name: str = DEFAULT_ENDPOINT_NAME
    model_data: str | None = None
    training_job: str | None = None
    #: A tuning job: host its best training job's model.
    best_of: str | None = None
    instance_type: str = "ml.c5.xlarge"
    instance_count: int = 1
    workers: int | None = None
    timeout_s: int | None = None
    startup_health_check_timeout_s: int = 600
    environment: dict[str, str] = field(default_factory=dict)
    autoscale_min: int | None = None
    autoscale_max: int | None = None
    #: Invocations per instance per minute: 6,000 (100 req/s), well under the ~1,800 req/s
    #: one 4-core instance serves (BENCHMARKS.md), leaving room for bursts and p99 latency.
    autoscale_target: float = 6000.0
    scale_in_cooldown_s: int = 300
    scale_out_cooldown_s: int = 60

    def check(self) -> None:
        """Reject what ``CreateEndpointConfig`` would reject, before any call.

        Raises:
            LaunchError: The start-up health-check timeout is outside 60-3600 seconds.
        """
        if not 60 <= self.startup_health_check_timeout_s <= 3600:
            raise LaunchError(
                "--startup-health-check-timeout must be 60-3600 seconds, got "
                f"{self.startup_health_check_timeout_s}"
            )

    @property
    def autoscale(self) -> bool:
        """Whether target-tracking autoscaling was asked for."""
        return self.autoscale_min is not None or self.autoscale_max is not None

    def container_environment(self) -> dict[str, str]:
        """Serving settings the container reads (issue 3): workers and request timeout."""
        environment = dict(self.environment)
        if self.workers is not None:
            environment["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(self.workers)
        if self.timeout_s is not None:
            environment["SAGEMAKER_MODEL_SERVER_TIMEOUT"] = str(self.timeout_s)
        return environment


@dataclass(frozen=True)
class BatchOptions:
    """What one transform job needs beyond the shared settings."""

    input_uri: str
    output_uri: str | None = None
    model_name: str | None = None
    model_data: str | None = None
    training_job: str | None = None
    best_of: str | None = None
    instance_type: str = "ml.c5.xlarge"
    instance_count: int = 1
    batch_strategy: str = "MultiRecord"
    max_payload_mb: int = 6
    max_concurrent_transforms: int | None = None

    def check(self) -> None:
        """SageMaker's rule: MaxPayloadInMB x MaxConcurrentTransforms <= 100 MB.

        Raises:
            LaunchError: The product is over 100 MB.
        """
        concurrent = self.max_concurrent_transforms or 1
        if self.max_payload_mb * concurrent > 100:
            raise LaunchError(
                f"--max-payload {self.max_payload_mb} x --max-concurrent-transforms {concurrent} "
                "is over SageMaker's 100 MB limit"
            )
