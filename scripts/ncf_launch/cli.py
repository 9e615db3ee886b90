"""``ncf``: one command line for training, tuning, hosting and batch jobs of the NCF image.

Every subcommand takes ``--region``, ``--dry-run`` (print the exact API
requests as JSON on stdout and send nothing) and the shared settings, which
come from flags, then ``NCF_*`` environment variables, then ``ncf.toml``.
Results are JSON on stdout; progress and SDK logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ncf_launch.aws import AwsContext
from ncf_launch.batch import run_batch
from ncf_launch.cleanup import run_cleanup, run_list
from ncf_launch.deploy import run_deploy
from ncf_launch.errors import JobEndedError, LaunchError
from ncf_launch.invoke import build_body, format_predictions, run_invoke
from ncf_launch.jobs import (
    KINDS,
    LOGGED_KINDS,
    STOPPABLE_KINDS,
    check_kind,
    kind_of,
    run_describe,
    run_logs,
    run_stop,
)
from ncf_launch.options import (
    BATCH_STRATEGIES,
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_LOCAL_PORT,
    DEFAULT_RANGES,
    DEFAULT_TOP_K,
    INPUT_MODES,
    S3_DISTRIBUTIONS,
    TUNING_STRATEGIES,
    BatchOptions,
    DeployOptions,
    SecurityOptions,
    TrainOptions,
    TuneOptions,
    parse_assignments,
    parse_data_capture,
    parse_int_pair,
    parse_list,
    parse_string_assignments,
)
from ncf_launch.settings import Settings

EXIT_USAGE = 2
#: A job or endpoint ended Failed or Stopped, or AWS refused a request.
EXIT_JOB_ENDED = 1

EPILOG = """settings (flag > environment > ncf.toml [ncf] table):
  --region     NCF_REGION (then AWS_REGION)   --role-arn  NCF_ROLE_ARN
  --image-uri  NCF_IMAGE_URI                  --bucket    NCF_BUCKET
  --prefix     NCF_PREFIX (default ncf)       file: $NCF_CONFIG or ./ncf.toml
"""


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("shared settings")
    group.add_argument("--region", help="AWS region (NCF_REGION, AWS_REGION)")
    group.add_argument("--role-arn", help="SageMaker execution role ARN (NCF_ROLE_ARN)")
    group.add_argument("--image-uri", help="ECR image URI of the NCF container (NCF_IMAGE_URI)")
    group.add_argument("--bucket", help="S3 bucket for outputs and checkpoints (NCF_BUCKET)")
    group.add_argument("--prefix", help="S3 key prefix under the bucket (NCF_PREFIX, default ncf)")
    group.add_argument(
        "--tag",
        action="append",
        metavar="KEY=VALUE",
        help="extra tag (repeatable); project=ncf-sagemaker is always added",
    )
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="print the exact API requests as JSON and change nothing (no credentials needed)",
    )
    group.add_argument(
        "--skip-role-check",
        action="store_true",
        help="do not let the SDK simulate the role's IAM policies first",
    )


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data channels (s3://..., or a folder / file:// with --local)")
    data.add_argument("--train", required=True, help="train channel")
    data.add_argument("--validation", help="validation channel")
    data.add_argument("--test", help="test channel")
    data.add_argument("--test-negatives", help="test_negatives channel")
    job = parser.add_argument_group("job")
    job.add_argument(
        "--hp",
        action="append",
        metavar="NAME=VALUE",
        help="hyperparameter (repeatable), e.g. --hp epochs=20 --hp model_type=neumf",
    )
    job.add_argument(
        "--instance-type",
        default=TrainOptions.instance_type,
        help=f"default {TrainOptions.instance_type}",
    )
    job.add_argument("--instance-count", type=int, default=TrainOptions.instance_count)
    job.add_argument(
        "--volume-size",
        type=int,
        default=TrainOptions.volume_size_gb,
        help=f"GB, default {TrainOptions.volume_size_gb}",
    )
    job.add_argument(
        "--max-runtime",
        type=int,
        default=TrainOptions.max_runtime_s,
        help=f"seconds, default {TrainOptions.max_runtime_s}",
    )
    job.add_argument("--spot", action="store_true", help="managed Spot training (checkpointed)")
    job.add_argument("--max-wait", type=int, help="Spot: seconds incl. waiting (>= max runtime)")
    job.add_argument("--checkpoint-s3-uri", help="default s3://BUCKET/PREFIX/checkpoints/<job>")
    job.add_argument("--input-mode", choices=INPUT_MODES, default=TrainOptions.input_mode)
    job.add_argument(
        "--s3-distribution",
        choices=S3_DISTRIBUTIONS,
        default=TrainOptions.s3_distribution,
        help="how the train channel is spread over --instance-count instances "
        f"(default {TrainOptions.s3_distribution}; validation and test are replicated; "
        "ShardedByS3Key is refused with more than one instance: training shards by user)",
    )
    job.add_argument("--output-path", help="S3 output path (default s3://BUCKET/PREFIX/output)")
    job.add_argument("--env", action="append", metavar="NAME=VALUE", help="container environment")
    job.add_argument("--no-wait", action="store_true", help="start the job and return")
    _security_arguments(parser)


def _security_arguments(parser: argparse.ArgumentParser, endpoint: bool = False) -> None:
    group = parser.add_argument_group("network and encryption")
    group.add_argument("--subnets", metavar="SUBNET,...", help="run in these VPC subnets")
    group.add_argument(
        "--security-group-ids", metavar="SG,...", help="VPC security groups (with --subnets)"
    )
    group.add_argument(
        "--network-isolation", action="store_true", help="no network access for the container"
    )
    group.add_argument(
        "--output-kms-key",
        help="KMS key for what lands in S3"
        + (" (data capture)" if endpoint else " (model artifacts, batch output)"),
    )
    if endpoint:
        group.add_argument("--endpoint-kms-key", help="KMS key for the endpoint's volumes")
    else:
        group.add_argument("--volume-kms-key", help="KMS key for the instances' volumes")


def security_options_from(args: argparse.Namespace) -> SecurityOptions:
    """The network and encryption flags of any command that has them."""
    return SecurityOptions(
        subnets=parse_list(args.subnets),
        security_group_ids=parse_list(args.security_group_ids),
        network_isolation=args.network_isolation,
        kms_key=args.output_kms_key,
        volume_kms_key=getattr(args, "volume_kms_key", None),
        endpoint_kms_key=getattr(args, "endpoint_kms_key", None),
    )


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (default: the latest completed ncf-train job)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--model-data", help="s3://.../model.tar.gz (file://... with --local)")
    source.add_argument("--training-job", help="take the model of this training job")
    source.add_argument(
        "--best-of", metavar="TUNING_JOB", help="take the model of this tuning job's best trial"
    )


def _job_command(
    command: Callable[[str, str], argparse.ArgumentParser],
    name: str,
    text: str,
    kinds: Sequence[str],
) -> argparse.ArgumentParser:
    sub = command(name, text)
    sub.add_argument("name", metavar="NAME", help="job or endpoint name")
    sub.add_argument(
        "--kind",
        choices=kinds,
        help="what NAME is (default: from ncf's naming: ncf-train-*, ncf-tune-*, ncf-batch-*, "
        "else an endpoint)",
    )
    return sub


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one flat list of flags
    """The ``ncf`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="ncf",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(sub)
        return sub

    train = command("train", "start a SageMaker training job with the NCF image")
    _train_arguments(train)
    train.add_argument(
        "--local",
        action="store_true",
        help="train with SageMaker local mode on Docker (channels from folders, file:// or s3://)",
    )

    tune = command("tune", "hyperparameter tuning job maximising validation:hr")
    _train_arguments(tune)
    tune.add_argument(
        "--range",
        action="append",
        metavar="NAME=SPEC",
        help="continuous:LO:HI[:log] | integer:LO:HI[:log] | categorical:A|B|C "
        "(default: learning_rate, num_negatives, batch_size, gmf_dim)",
    )
    tune.add_argument("--max-jobs", type=int, default=TuneOptions.max_jobs)
    tune.add_argument("--max-parallel-jobs", type=int, default=TuneOptions.max_parallel_jobs)
    tune.add_argument("--strategy", choices=TUNING_STRATEGIES, default=TuneOptions.strategy)

    deploy = command("deploy", "create or update (no downtime) a real-time endpoint")
    _model_arguments(deploy)
    deploy.add_argument("--endpoint-name", default=DEFAULT_ENDPOINT_NAME)
    deploy.add_argument(
        "--instance-type",
        default=DeployOptions.instance_type,
        help="CPU ml.c5/ml.m5, GPU ml.g4dn/ml.g5 (use the GPU image flavour)",
    )
    deploy.add_argument("--instance-count", type=int, default=DeployOptions.instance_count)
    deploy.add_argument("--workers", type=int, help="SAGEMAKER_MODEL_SERVER_WORKERS")
    deploy.add_argument("--timeout", type=int, help="SAGEMAKER_MODEL_SERVER_TIMEOUT, seconds")
    deploy.add_argument(
        "--startup-health-check-timeout",
        type=int,
        default=DeployOptions.startup_health_check_timeout_s,
        help="ContainerStartupHealthCheckTimeoutInSeconds "
        f"(default {DeployOptions.startup_health_check_timeout_s})",
    )
    deploy.add_argument("--env", action="append", metavar="NAME=VALUE")
    deploy.add_argument("--autoscale-min", type=int, help="enable target tracking: min instances")
    deploy.add_argument("--autoscale-max", type=int, help="max instances")
    deploy.add_argument(
        "--autoscale-target",
        type=float,
        default=DeployOptions.autoscale_target,
        help="SageMakerVariantInvocationsPerInstance per minute "
        f"(default {DeployOptions.autoscale_target:g})",
    )
    deploy.add_argument(
        "--serverless",
        metavar="MEMORY_MB,MAX_CONCURRENCY",
        help="a serverless endpoint (memory 1024-6144 in steps of 1024, concurrency 1-200): "
        "no instances, no cost while idle",
    )
    deploy.add_argument(
        "--model-data-download-timeout",
        type=int,
        metavar="SECONDS",
        help="ModelDataDownloadTimeoutInSeconds (60-3600)",
    )
    deploy.add_argument(
        "--data-capture",
        metavar="S3_URI[,PERCENT]",
        help="capture requests and responses (PERCENT of them, default 100) to S3",
    )
    guardrails = deploy.add_argument_group("deployment guardrails (updates of an endpoint)")
    shifting = guardrails.add_mutually_exclusive_group()
    shifting.add_argument(
        "--canary",
        metavar="PERCENT,WAIT_SECONDS",
        help="move PERCENT (1-50) of the capacity first, the rest after WAIT_SECONDS",
    )
    shifting.add_argument(
        "--linear",
        metavar="STEP_PERCENT,WAIT_SECONDS",
        help="move STEP_PERCENT (10-50) of the capacity every WAIT_SECONDS",
    )
    guardrails.add_argument(
        "--rollback-alarm",
        action="append",
        metavar="NAME",
        help="CloudWatch alarm that rolls the update back (repeatable, at most 10)",
    )
    _security_arguments(deploy, endpoint=True)
    deploy.add_argument("--no-wait", action="store_true")
    deploy.add_argument(
        "--local",
        action="store_true",
        help="serve with SageMaker local mode on Docker until Ctrl-C",
    )
    deploy.add_argument(
        "--port",
        type=int,
        default=DEFAULT_LOCAL_PORT,
        help=f"--local: host port ({DEFAULT_LOCAL_PORT})",
    )

    invoke = command("invoke", "send one request and print the recommendations")
    invoke.add_argument("--endpoint-name", default=DEFAULT_ENDPOINT_NAME)
    invoke.add_argument("--user-id", help="top-k for this user")
    invoke.add_argument("--item-id", help="items similar to this one")
    invoke.add_argument("--k", type=int, default=DEFAULT_TOP_K)
    invoke.add_argument("--payload", help="JSON request body from this file")
    invoke.add_argument("--json", action="store_true", help="print the raw JSON answer")
    invoke.add_argument("--local", action="store_true", help="call the local-mode endpoint")
    invoke.add_argument("--port", type=int, default=DEFAULT_LOCAL_PORT)

    batch = command("batch", "batch transform over JSON Lines in S3, one output line per input")
    _model_arguments(batch)
    batch.add_argument("--input", required=True, help="s3:// prefix of .jsonl files")
    batch.add_argument(
        "--output", help="s3:// output path (default s3://BUCKET/PREFIX/batch-output)"
    )
    batch.add_argument("--model-name", help="use this existing SageMaker model")
    batch.add_argument("--instance-type", default=BatchOptions.instance_type)
    batch.add_argument("--instance-count", type=int, default=BatchOptions.instance_count)
    batch.add_argument(
        "--batch-strategy", choices=BATCH_STRATEGIES, default=BatchOptions.batch_strategy
    )
    batch.add_argument(
        "--max-payload",
        type=int,
        default=BatchOptions.max_payload_mb,
        help=f"MB per request (default {BatchOptions.max_payload_mb})",
    )
    batch.add_argument("--max-concurrent-transforms", type=int)
    _security_arguments(batch)
    batch.add_argument("--no-wait", action="store_true")

    cleanup = command(
        "cleanup",
        "delete an endpoint with its endpoint config and model, and this project's "
        "endpoint configs and models that nothing uses",
    )
    cleanup.add_argument("--endpoint-name", default=DEFAULT_ENDPOINT_NAME)
    cleanup.add_argument(
        "--keep-model", action="store_true", help="keep every model (orphans included)"
    )
    cleanup.add_argument(
        "--orphans-only", action="store_true", help="delete no endpoint, only the orphans"
    )

    command("list", "list everything tagged project=ncf-sagemaker in the region")

    _job_command(
        command,
        "describe",
        "status, final metrics and FailureReason of a job or endpoint, as JSON",
        KINDS,
    )
    _job_command(command, "stop", "stop a training, tuning or batch job", STOPPABLE_KINDS)
    logs = _job_command(
        command, "logs", "print the CloudWatch log lines of a job or endpoint", LOGGED_KINDS
    )
    logs.add_argument(
        "--follow",
        action="store_true",
        help="training job: stream its logs until it ends, then report it (as ncf train does)",
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Resolve the shared settings of a parsed command line."""
    flags = {
        "region": args.region,
        "role_arn": args.role_arn,
        "image_uri": args.image_uri,
        "bucket": args.bucket,
        "prefix": args.prefix,
    }
    return Settings.resolve(
        flags,
        dry_run=args.dry_run,
        local=getattr(args, "local", False),
        check_role=not args.skip_role_check,
        extra_tags=tuple(parse_string_assignments(args.tag, "--tag").items()),
    )


def train_options_from(args: argparse.Namespace) -> TrainOptions:
    """The training job of ``ncf train`` and ``ncf tune``."""
    channels = {
        name: value
        for name, value in {
            "train": args.train,
            "validation": args.validation,
            "test": args.test,
            "test_negatives": args.test_negatives,
        }.items()
        if value
    }
    return TrainOptions(
        channels=channels,
        hyperparameters=parse_assignments(args.hp, "--hp"),
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        volume_size_gb=args.volume_size,
        max_runtime_s=args.max_runtime,
        spot=args.spot,
        max_wait_s=args.max_wait,
        checkpoint_s3_uri=args.checkpoint_s3_uri,
        input_mode=args.input_mode,
        output_path=args.output_path,
        environment=parse_string_assignments(args.env, "--env"),
        s3_distribution=args.s3_distribution,
        security=security_options_from(args),
    )


def tune_options_from(args: argparse.Namespace) -> TuneOptions:
    """The tuning job of ``ncf tune``."""
    return TuneOptions(
        training=train_options_from(args),
        ranges=parse_string_assignments(args.range, "--range") or dict(DEFAULT_RANGES),
        max_jobs=args.max_jobs,
        max_parallel_jobs=args.max_parallel_jobs,
        strategy=args.strategy,
    )


def deploy_options_from(args: argparse.Namespace) -> DeployOptions:
    """The endpoint of ``ncf deploy``."""
    return DeployOptions(
        endpoint_name=args.endpoint_name,
        model_data=args.model_data,
        training_job=args.training_job,
        best_of=args.best_of,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        workers=args.workers,
        timeout_s=args.timeout,
        startup_health_check_timeout_s=args.startup_health_check_timeout,
        environment=parse_string_assignments(args.env, "--env"),
        autoscale_min=args.autoscale_min,
        autoscale_max=args.autoscale_max,
        autoscale_target=args.autoscale_target,
        serverless=parse_int_pair(args.serverless, "--serverless", "MEMORY_MB,MAX_CONCURRENCY"),
        traffic_shifting=traffic_shifting_from(args),
        rollback_alarms=tuple(args.rollback_alarm or ()),
        data_capture=parse_data_capture(args.data_capture),
        model_data_download_timeout_s=args.model_data_download_timeout,
        security=security_options_from(args),
    )


def traffic_shifting_from(args: argparse.Namespace) -> tuple[str, int, int] | None:
    """``--canary P,S`` -> ``("CANARY", P, S)``; ``--linear P,S`` -> ``("LINEAR", P, S)``."""
    for kind, text in (("CANARY", args.canary), ("LINEAR", args.linear)):
        pair = parse_int_pair(text, f"--{kind.lower()}", "PERCENT,WAIT_SECONDS")
        if pair is not None:
            return kind, *pair
    return None


def batch_options_from(args: argparse.Namespace) -> BatchOptions:
    """The transform job of ``ncf batch``."""
    return BatchOptions(
        input_uri=args.input,
        output_uri=args.output,
        model_name=args.model_name,
        model_data=args.model_data,
        training_job=args.training_job,
        best_of=args.best_of,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        batch_strategy=args.batch_strategy,
        max_payload_mb=args.max_payload,
        max_concurrent_transforms=args.max_concurrent_transforms,
        security=security_options_from(args),
    )


def serve_locally(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """``ncf deploy --local``: serve until Ctrl-C or SIGTERM, then remove the endpoint."""
    # Lazy: local mode imports the SageMaker SDK (seconds); the other commands stay light.
    from ncf_launch.local import run_local_deploy, stop_local_endpoint

    session, names = run_local_deploy(settings, deploy_options_from(args), port=args.port)
    print(json.dumps(names), file=sys.__stdout__, flush=True)
    print("serving; Ctrl-C (or SIGTERM) stops the endpoint", file=sys.stderr, flush=True)
    stop = {"requested": False}

    def request_stop(*_: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stop["requested"]:
            signal.pause() if hasattr(signal, "pause") else None  # woken by any signal
    except KeyboardInterrupt:
        pass
    stop_local_endpoint(session, names)
    return {"stopped": names["endpoint_name"]}


def follow_logs(settings: Settings, name: str, kind: str | None) -> dict[str, Any]:
    """``ncf logs --follow``: stream a training job's logs until it ends, then report it."""
    check_kind(kind_of(name, kind), ("training",), "logs --follow", name)
    # Lazy: following a job reads its logs through the SageMaker SDK (seconds to import).
    from ncf_launch.train import follow_training_job

    return follow_training_job(AwsContext(settings), name)


def dispatch(args: argparse.Namespace) -> Any:  # noqa: PLR0911, PLR0912 - one branch per command
    """Run the parsed command; returns what to print."""
    settings = settings_from(args)
    wait = not getattr(args, "no_wait", False)
    if args.command == "train":
        if settings.local:
            # Lazy: local mode imports the SageMaker SDK (seconds); deploy, invoke stay light.
            from ncf_launch.local import run_local_train

            return run_local_train(settings, train_options_from(args))
        # Lazy: training imports the SageMaker SDK (seconds); deploy, invoke, list stay light.
        from ncf_launch.train import run_train

        return run_train(settings, train_options_from(args), wait=wait)
    if args.command == "tune":
        # Lazy: tuning imports the SageMaker SDK (seconds); deploy, invoke, list stay light.
        from ncf_launch.tune import run_tune

        return run_tune(settings, tune_options_from(args), wait=wait)
    if args.command == "deploy":
        if settings.local:
            return serve_locally(settings, args)
        return run_deploy(settings, deploy_options_from(args), wait=wait)
    if args.command == "invoke":
        body = build_body(args.payload, args.user_id, args.item_id, args.k)
        if settings.local:
            # Lazy: local mode imports the SageMaker SDK (seconds); a cloud invoke stays light.
            from ncf_launch.local import invoke_local

            answer = invoke_local(body, args.endpoint_name, args.port)
        else:
            answer = run_invoke(settings, args.endpoint_name, body)
        if args.json or answer.get("dry_run"):
            return answer
        return format_predictions(answer)
    if args.command == "batch":
        return run_batch(settings, batch_options_from(args), wait=wait)
    if args.command == "cleanup":
        return run_cleanup(
            settings,
            args.endpoint_name,
            keep_model=args.keep_model,
            orphans_only=args.orphans_only,
        )
    if args.command == "list":
        return run_list(settings)
    if args.command == "describe":
        return run_describe(settings, args.name, args.kind)
    if args.command == "stop":
        return run_stop(settings, args.name, args.kind)
    if args.command == "logs":
        if args.follow:
            return follow_logs(settings, args.name, args.kind)
        return run_logs(settings, args.name, args.kind)
    raise LaunchError(f"unknown command {args.command}")


def show_sdk_logs() -> None:
    """Send the SDK's INFO logs (job names, training log lines, statuses) to stderr.

    sagemaker-core logs through the ``sagemaker`` loggers and attaches no handler
    unless rich logging is opted in, so without this its INFO records (the job's
    log lines among them) are dropped.
    """
    logger = logging.getLogger("sagemaker")
    for old in [handler for handler in logger.handlers if getattr(handler, "ncf", False)]:
        logger.removeHandler(old)  # bound to an earlier sys.stderr (in-process runs, tests)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.ncf = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None, out: Callable[[str], Any] | None = None) -> int:
    """Parse, run, print; a ``LaunchError`` becomes ``error: ...`` on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    show_sdk_logs()
    real_stdout = sys.stdout
    write = out or (lambda text: print(text, file=real_stdout, flush=True))
    try:
        # SDK progress and logs must not mix with the JSON on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            result = dispatch(args)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except JobEndedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_JOB_ENDED
    except (ClientError, BotoCoreError) as error:  # say which call failed, without a traceback
        print(f"error: AWS said: {error}", file=sys.stderr)
        return EXIT_JOB_ENDED
    if isinstance(result, dict) and result.get("dry_run"):
        write(json.dumps(result["requests"], indent=2, default=str))
    elif isinstance(result, str):
        write(result)
    else:
        write(json.dumps(result, indent=2, default=str))
    return 0
