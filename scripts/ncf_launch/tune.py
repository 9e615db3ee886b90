"""``ncf tune``: a hyperparameter tuning job (SDK v3 ``HyperparameterTuner``) over NCF settings.

It maximises ``OBJECTIVE_METRIC`` from ``ncf_contract.metric_lines`` (the
validation hit rate), read from the logs with the same ``METRIC_DEFINITIONS``
as a single training job. The training job definition comes from the same
``ModelTrainer`` as ``ncf train``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from sagemaker.core.parameter import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    ParameterRange,
)
from sagemaker.train.tuner import HyperparameterTuner

from ncf_contract.metric_lines import METRIC_DEFINITIONS, OBJECTIVE_METRIC
from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.options import TUNE_BASE_JOB_NAME, TuneOptions
from ncf_launch.settings import Settings
from ncf_launch.train import build_channels, build_trainer


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


def run_tune(settings: Settings, options: TuneOptions, wait: bool = True) -> dict[str, Any]:
    """Start the tuning job; with ``wait``, wait for it and report the best training job."""
    if settings.local:
        raise LaunchError("tuning runs on SageMaker only; use `ncf train --local` to rehearse")
    if options.training.checkpoint_s3_uri:
        raise LaunchError(
            "--checkpoint-s3-uri with tune: every trial would resume from the same prefix"
        )
    context = AwsContext(settings)
    training = replace(options.training, base_job_name=TUNE_BASE_JOB_NAME)
    # No CheckpointConfig: a tuning job gives all its trials the same one, and a Spot trial
    # could resume another trial's weights. An interrupted Spot trial starts again instead.
    trainer = build_trainer(settings, training, context, checkpoints=False)
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
    tuner.tune(
        inputs=build_channels(training),
        job_name=tuning_job_name(),
        wait=wait and not context.dry_run,
    )
    if context.dry_run:
        return context.dry_run_result()
    name = tuner.latest_tuning_job.hyper_parameter_tuning_job_name
    result: dict[str, Any] = {"tuning_job_name": name}
    if wait:
        description = context.client("sagemaker").describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name
        )
        best = description.get("BestTrainingJob", {})
        result.update(
            status=description.get("HyperParameterTuningJobStatus"),
            best_training_job=best.get("TrainingJobName"),
            best_objective=best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"),
            best_hyperparameters=best.get("TunedHyperParameters"),
        )
    return result
