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

from ncf_contract.channels import CHANNELS, SHARDED_BY_S3_KEY, SHARDED_TRAIN_REFUSED
from ncf_launch.errors import LaunchError
from ncf_launch.settings import check_s3_uri

INPUT_MODES = ("File", "FastFile")
TUNING_STRATEGIES = ("Bayesian", "Random", "Hyperband")
BATCH_STRATEGIES = ("MultiRecord", "SingleRecord")
S3_DISTRIBUTIONS = ("FullyReplicated", SHARDED_BY_S3_KEY)
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


def parse_int_pair(text: str | None, what: str, form: str) -> tuple[int, int] | None:
    """``"2048,20"`` -> ``(2048, 20)``; ``None`` stays ``None``.

    Raises:
        LaunchError: Not two comma-separated integers (``form`` says which).
    """
    if text is None:
        return None
    parts = text.split(",")
    try:
        first, second = (int(part) for part in parts)
    except ValueError:
        raise LaunchError(f"{what}: expected {form} (two integers), got {text!r}") from None
    return first, second


def parse_list(text: str | None) -> tuple[str, ...]:
    """``"subnet-a,subnet-b"`` -> ``("subnet-a", "subnet-b")``; empty items dropped."""
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


def parse_data_capture(text: str | None) -> tuple[str, int] | None:
    """``"s3://b/capture,20"`` -> ``("s3://b/capture", 20)``; the percentage defaults to 100.

    Raises:
        LaunchError: The URI is not ``s3://...`` or the percentage is not an integer.
    """
    if text is None:
        return None
    uri, comma, percent = text.rpartition(",")
    if not comma:
        uri, percent = text, "100"
    try:
        return check_s3_uri(uri, "--data-capture"), int(percent)
    except ValueError:
        raise LaunchError(f"--data-capture: expected S3_URI[,PERCENT], got {text!r}") from None


@dataclass(frozen=True)
class SecurityOptions:
    """Network and encryption settings shared by training, tuning, hosting and batch jobs."""

    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    #: The container gets no network at all (SageMaker still fetches its data and model).
    network_isolation: bool = False
    #: KMS key for what a job writes to S3 (model artifacts, batch output, captured data).
    kms_key: str | None = None
    #: KMS key for the ML storage volumes of training instances and batch jobs.
    volume_kms_key: str | None = None
    #: KMS key for the ML storage volumes of an endpoint's instances.
    endpoint_kms_key: str | None = None

    def check(self) -> None:
        """Subnets and security groups come together (a VPC needs both).

        Raises:
            LaunchError: Only one of them was given.
        """
        if bool(self.subnets) != bool(self.security_group_ids):
            raise LaunchError(
                "a VPC needs both --subnets and --security-group-ids (comma-separated), or neither"
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
            LaunchError: Missing ``train`` channel, unknown channel, bad URI or Spot setting,
                or a train channel sharded by S3 key on several instances (as training does).
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
        if self.instance_count > 1 and self.s3_distribution == SHARDED_BY_S3_KEY:
            raise LaunchError(f"--instance-count {self.instance_count}: {SHARDED_TRAIN_REFUSED}")
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
    #: ``(memory MB, max concurrency)``: a serverless endpoint instead of instances.
    serverless: tuple[int, int] | None = None
    #: ``(CANARY or LINEAR, percent of the fleet, seconds between steps)`` for updates.
    traffic_shifting: tuple[str, int, int] | None = None
    #: CloudWatch alarms that roll an update back when they fire.
    rollback_alarms: tuple[str, ...] = ()
    #: ``(S3 URI, percent of requests)``: capture requests and responses.
    data_capture: tuple[str, int] | None = None
    model_data_download_timeout_s: int | None = None
    security: SecurityOptions = field(default_factory=SecurityOptions)

    def check(self) -> None:
        """Reject what ``CreateEndpointConfig`` or ``UpdateEndpoint`` would reject, before any call.

        Raises:
            LaunchError: A value out of the API's range, or settings that do not go together.
        """
        if not 60 <= self.startup_health_check_timeout_s <= 3600:
            raise LaunchError(
                "--startup-health-check-timeout must be 60-3600 seconds, got "
                f"{self.startup_health_check_timeout_s}"
            )
        timeout = self.model_data_download_timeout_s
        if timeout is not None and not 60 <= timeout <= 3600:
            raise LaunchError(
                f"--model-data-download-timeout must be 60-3600 seconds, got {timeout}"
            )
        if self.data_capture is not None and not 0 <= self.data_capture[1] <= 100:
            raise LaunchError(f"--data-capture: percent must be 0-100, got {self.data_capture[1]}")
        self.security.check()
        self._check_traffic_shifting()
        self._check_serverless()

    def _check_traffic_shifting(self) -> None:
        if self.rollback_alarms and self.traffic_shifting is None:
            raise LaunchError("--rollback-alarm needs --canary or --linear")
        if len(self.rollback_alarms) > 10:
            raise LaunchError("at most 10 --rollback-alarm")
        if self.traffic_shifting is None:
            return
        kind, percent, wait_s = self.traffic_shifting
        flag = f"--{kind.lower()}"
        # The API's rule: a canary is at most half the fleet, a linear step 10-50% of it.
        low = 10 if kind == "LINEAR" else 1
        if not low <= percent <= 50:
            raise LaunchError(f"{flag}: percent must be {low}-50, got {percent}")
        if not 0 <= wait_s <= 3600:
            raise LaunchError(f"{flag}: wait must be 0-3600 seconds, got {wait_s}")

    def _check_serverless(self) -> None:
        if self.serverless is None:
            return
        memory_mb, concurrency = self.serverless
        if memory_mb not in range(1024, 6145, 1024):
            raise LaunchError(
                f"--serverless: memory must be 1024-6144 MB in steps of 1024, got {memory_mb}"
            )
        if not 1 <= concurrency <= 200:
            raise LaunchError(f"--serverless: max concurrency must be 1-200, got {concurrency}")
        # Serverless endpoints have none of these (AWS's list of serverless exclusions).
        excluded = {
            "--autoscale-min/--autoscale-max (use MAX_CONCURRENCY)": self.autoscale,
            "--data-capture": self.data_capture is not None,
            "--subnets/--security-group-ids": bool(self.security.subnets),
            "--network-isolation": self.security.network_isolation,
            "--canary/--linear": self.traffic_shifting is not None,
            "--model-data-download-timeout": self.model_data_download_timeout_s is not None,
        }
        given = [flag for flag, present in excluded.items() if present]
        if given:
            raise LaunchError(f"--serverless does not go with {', '.join(given)}")

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
    security: SecurityOptions = field(default_factory=SecurityOptions)

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
        self.security.check()
