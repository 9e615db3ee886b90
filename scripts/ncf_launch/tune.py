"""``ncf tune``: a hyperparameter tuning job (SDK v3 ``HyperparameterTuner``) over NCF settings.

It maximises ``OBJECTIVE_METRIC`` from ``ncf_contract.metric_lines`` (the
validation hit rate), read from the logs with the same ``METRIC_DEFINITIONS``
as a single training job. The training job definition comes from the same
``ModelTrainer`` as ``ncf train``.

Checkpoints (Spot, or ``--checkpoint-s3-uri``): a tuning job gives every trial
the same ``CheckpointConfig``, so all trials of one tuning job sync one prefix —
by default ``s3://BUCKET/PREFIX/checkpoints/<tuning job name>``, never shared
with another run. Sharing it within the tuning job is safe because the
container resumes a checkpoint only when it was written with the same value of
*every* hyperparameter and the same data (``training.families.ncf.compatibility``):
a trial never resumes another trial's weights, and since the checkpoint file is
named by that key (``training.state.checkpoint_file``), parallel trials never
overwrite each other and an interrupted trial resumes its own. The few
hyperparameters outside that key (the
epoch budget) cannot be tuned with checkpoints: a short trial could resume a
longer one's checkpoint and report its result.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any

from sagemaker.core.parameter import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    ParameterRange,
)
from sagemaker.core.utils.exceptions import FailedStatusError
from sagemaker.train.tuner import HyperparameterTuner

from ncf_contract.metric_lines import METRIC_DEFINITIONS, OBJECTIVE_METRIC
from ncf_launch.aws import AwsContext
from ncf_launch.errors import JobEndedError, LaunchError
from ncf_launch.jobs import describe_tuning_job
from ncf_launch.options import TUNE_BASE_JOB_NAME, TrainOptions, TuneOptions
from ncf_launch.settings import Settings
from ncf_launch.train import announce, build_channels, build_trainer


def parse_range(name: str, spec: str) -> ParameterRange:
    """``continuous:LO:HI[:log]``, ``integer:LO:HI[:log]`` or ``categorical:A|B|C``.

    Raises:
        LaunchError: The spec does not have one of those forms.
    """
    kind, _, rest = spec.partition(":")
    try:
        if kind == "categorical":
            values = [value for value in rest.split("|") if value]
            if not values:
                raise ValueError("no values")
            return CategoricalParameter(values)
        parts = rest.split(":")
        scaling = "Logarithmic" if len(parts) == 3 and parts[2] == "log" else "Auto"
        if kind == "continuous":
            return ContinuousParameter(float(parts[0]), float(parts[1]), scaling_type=scaling)
        if kind == "integer":
            return IntegerParameter(int(parts[0]), int(parts[1]), scaling_type=scaling)
    except (ValueError, IndexError) as error:
        raise LaunchError(f"--range {name}={spec}: {error}") from error
    raise LaunchError(
        f"--range {name}={spec}: expected continuous:LO:HI[:log], integer:LO:HI[:log] "
        "or categorical:A|B|C"
    )


def tuning_job_name() -> str:
    """``ncf-tune-yymmdd-HHMMSS-mmm``: at most 32 characters, millisecond resolution.

    The SDK's default name has minute resolution, so two jobs started in the same
    minute would collide.
    """
    stamp = time.strftime("%y%m%d-%H%M%S", time.gmtime())
    return f"{TUNE_BASE_JOB_NAME}-{stamp}-{int(time.time() * 1000) % 1000:03d}"


#: Seconds between status polls while waiting for a tuning job.
POLL_SECONDS = 30

#: What the tuner optimises per feedback kind: explicit ratings log only RMSE.
OBJECTIVES = {
    "implicit": (OBJECTIVE_METRIC, "Maximize"),
    "explicit": ("validation:rmse", "Minimize"),
}


def objective_for(options: TuneOptions) -> tuple[str, str]:
    """The objective metric and direction for the ``feedback`` hyperparameter (default implicit).

    Raises:
        LaunchError: An unknown feedback kind.
    """
    feedback = str(options.training.hyperparameters.get("feedback", "implicit"))
    if feedback not in OBJECTIVES:
        raise LaunchError(f"--hp feedback={feedback}: expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[feedback]


#: Hyperparameters the container leaves out of its resume key (``compatibility`` in
#: training/families/ncf.py; a slow test keeps the two lists equal).
OUTSIDE_RESUME_KEY = ("collective_timeout", "early_stopping_patience", "epochs", "full_ranking")


def check_checkpoint_sharing(options: TuneOptions) -> None:
    """Refuse tuning the epoch budget when the trials share a checkpoint prefix.

    Raises:
        LaunchError: ``--spot`` or ``--checkpoint-s3-uri`` with a range over one of
            ``OUTSIDE_RESUME_KEY``.
    """
    training = options.training
    if not (training.spot or training.checkpoint_s3_uri):
        return
    tuned = sorted(set(options.ranges) & set(OUTSIDE_RESUME_KEY))
    if tuned:
        raise LaunchError(
            f"--range {', '.join(tuned)} with --spot or --checkpoint-s3-uri: the trials share "
            "a checkpoint prefix and the container resumes a checkpoint whatever its "
            f"{', '.join(OUTSIDE_RESUME_KEY)}, so a trial could report another's longer run; "
            "fix them with --hp, or tune them without checkpoints"
        )


def complete_training_definition(context: AwsContext, training: TrainOptions) -> None:
    """Put back what the SDK's tuner drops from the training job definition.

    ``HyperparameterTuner`` (sagemaker 3.27) copies the trainer's VPC, output key
    and instance settings, but not ``EnableNetworkIsolation`` nor the volume's KMS
    key: a tuning job asked to run isolated or encrypted would run neither. A
    botocore handler adds them to ``CreateHyperParameterTuningJob`` just before it
    is validated and sent (``--dry-run`` shows the completed request).
    """
    isolation = training.security.network_isolation
    volume_key = training.security.volume_kms_key
    if not (isolation or volume_key):
        return

    def complete(params: dict[str, Any], **_: Any) -> None:
        definition = params["TrainingJobDefinition"]
        if isolation:
            definition["EnableNetworkIsolation"] = True
        if volume_key:
            definition["ResourceConfig"]["VolumeKmsKeyId"] = volume_key

    context.boto_session.events.register_first(
        "before-parameter-build.sagemaker.CreateHyperParameterTuningJob", complete
    )


def run_tune(settings: Settings, options: TuneOptions, wait: bool = True) -> dict[str, Any]:
    """Start the tuning job; with ``wait``, wait for it and report the best training job."""
    if settings.local:
        raise LaunchError("tuning runs on SageMaker only; use `ncf train --local` to rehearse")
    check_checkpoint_sharing(options)
    context = AwsContext(settings)
    job_name = tuning_job_name()
    training = replace(options.training, base_job_name=TUNE_BASE_JOB_NAME)
    complete_training_definition(context, training)  # before the SDK makes its client
    trainer = build_trainer(settings, training, context, checkpoint_run=job_name)
    tuner = HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=objective_for(options)[0],
        objective_type=objective_for(options)[1],
        hyperparameter_ranges={
            name: parse_range(name, spec) for name, spec in options.ranges.items()
        },
        metric_definitions=METRIC_DEFINITIONS,
        strategy=options.strategy,
        max_jobs=options.max_jobs,
        max_parallel_jobs=options.max_parallel_jobs,
        # The API requires Off with Hyperband, which stops trials early by itself.
        early_stopping_type="Off" if options.strategy == "Hyperband" else options.early_stopping,
        base_tuning_job_name=TUNE_BASE_JOB_NAME,
        tags=settings.boto_tags(),
    )
    tuner.tune(inputs=build_channels(training), job_name=job_name, wait=False)
    if context.dry_run:
        return context.dry_run_result()
    name = tuner.latest_tuning_job.hyper_parameter_tuning_job_name
    announce("tuning job", name, settings.region, "describe")
    if not wait:
        return {"tuning_job_name": name, "status": "InProgress"}
    with contextlib.suppress(FailedStatusError):  # reported below, from the job's description
        tuner.latest_tuning_job.wait(poll=POLL_SECONDS)
    result = describe_tuning_job(context.client("sagemaker"), name)
    if result["status"] != "Completed":
        raise JobEndedError("tuning job", name, result["status"], result["failure_reason"])
    return result
