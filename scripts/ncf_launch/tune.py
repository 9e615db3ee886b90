"""``ncf tune``: a hyperparameter tuning job (SDK v3 ``HyperparameterTuner``) over NCF settings.

It maximises ``OBJECTIVE_METRIC`` from ``training.metric_definitions`` (the
validation hit rate), read from the logs with the same ``METRIC_DEFINITIONS``
as a single training job. The training job definition comes from the same
``ModelTrainer`` as ``ncf train``.
"""

from __future__ import annotations

import time
from typing import Any

from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.settings import Settings
from ncf_launch.train import TrainOptions, build_channels, build_trainer

#: The search space when no ``--range`` is given: the NCF paper's most sensitive knobs.
DEFAULT_RANGES: dict[str, str] = {
    "learning_rate": "continuous:0.0001:0.01:log",
    "num_negatives": "integer:2:8",
    "batch_size": "categorical:1024|2048|4096",
    "gmf_dim": "categorical:8|16|32|64",
}


def parse_range(name: str, spec: str) -> Any:
    """``continuous:LO:HI[:log]``, ``integer:LO:HI[:log]`` or ``categorical:A|B|C``.

    Raises:
        LaunchError: The spec does not have one of those forms.
    """
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

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


def run_tune(
    settings: Settings,
    options: TrainOptions,
    ranges: dict[str, str] | None = None,
    max_jobs: int = 8,
    max_parallel_jobs: int = 2,
    strategy: str = "Bayesian",
    early_stopping: str = "Auto",
    wait: bool = True,
) -> dict[str, Any]:
    """Start the tuning job; with ``wait``, wait for it and report the best training job."""
    from sagemaker.train.tuner import HyperparameterTuner

    from training.metric_definitions import METRIC_DEFINITIONS, OBJECTIVE_METRIC

    if settings.local:
        raise LaunchError("tuning runs on SageMaker only; use `ncf train --local` to rehearse")
    context = AwsContext(settings)
    options.base_job_name = options.base_job_name.replace("train", "tune")
    trainer = build_trainer(settings, options, context)
    hyperparameter_ranges = {
        name: parse_range(name, spec) for name, spec in (ranges or DEFAULT_RANGES).items()
    }
    tuner = HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=OBJECTIVE_METRIC,
        objective_type="Maximize",
        hyperparameter_ranges=hyperparameter_ranges,
        metric_definitions=METRIC_DEFINITIONS,
        strategy=strategy,
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        early_stopping_type=early_stopping,
        base_tuning_job_name="ncf-tune",
        tags=settings.boto_tags(),
    )
    dry_run = context.recorder is not None
    # Tuning job names are at most 32 characters; the SDK's default has minute resolution,
    # so two jobs started in the same minute would collide.
    job_name = time.strftime("ncf-tune-%y%m%d-%H%M%S", time.gmtime()) + (
        f"-{int(time.time() * 1000) % 1000:03d}"
    )
    tuner.tune(inputs=build_channels(options), job_name=job_name, wait=wait and not dry_run)
    if dry_run:
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
