"""The ``train`` program: one training job from ``/opt/ml`` in to ``model/`` out.

Order of work, so that a user's mistake fails in seconds: read the environment
and the hyperparameters, read and encode the data, and only then import
TensorFlow and train. The model is written to a scratch directory and moved
into ``model/`` as the very last step.

Exit status and ``output/failure``:

- success: exit 0, ``model/`` and ``output/data/`` written;
- a ``UserFacingError`` (bad data, bad hyperparameter): its message is the first
  line of ``output/failure`` (SageMaker's FailureReason), exit 1;
- any other exception: a one-line summary then the traceback in
  ``output/failure``, exit 2;
- SIGTERM (job stopped, Spot interruption): the current batch finishes, a
  checkpoint is written to ``checkpoints/``, ``model/`` is left untouched and
  the exit status is 0 — the job was asked to stop and did so cleanly;
  SageMaker records a stopped job as Stopped whatever the exit status, and a
  Spot job restarted with the same checkpoint location resumes from it.

On several instances (``training.cluster``, ``training.distributed``) every host
trains its share under ``MultiWorkerMirroredStrategy``; the chief (the first host)
alone tests the model and writes ``model/``, ``output/data/`` and checkpoints, while
the others wait for it and exit 0. A failure names its host in ``output/failure``;
a host that dies makes the others fail within seconds with a ``WorkerLostError``
naming it; a SIGTERM on any host stops every one after the same step. The
hyperparameter search runs its NCF trials and the refit under the strategy on every
host, the chief driving it (``training.search``); its other trials run on the chief
alone while the others wait. A job that can train nothing across hosts (a family that
does not distribute, or ``distribution=chief_only``) trains on the chief alone and
the other hosts exit at once, saying so: never N copies of the same run.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from ncf_contract.channels import CHANNELS, INTERACTION_CHANNELS
from ncf_contract.model_dir import publish_model_dir
from training.cluster import CHIEF_ONLY, Cluster, check_train_replicated
from training.config import TrainingConfig
from training.environment import Environment, base_dir_of
from training.errors import DataError, UserFacingError
from training.signals import stop_on_sigterm

logger = logging.getLogger("training")

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 2
_FAILURE_REASON_LIMIT = 1024


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _emit(line: str) -> None:
    """Print a metric line to stdout, where SageMaker's MetricDefinitions read it."""
    print(line, flush=True)


def _write_failure(env: Environment | None, base_dir: Path, text: str) -> None:
    path = env.failure_file if env is not None else base_dir / "output" / "failure"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError:
        logger.exception("could not write %s", path)


def _may_distribute(config: TrainingConfig) -> bool:
    """Whether anything this job fits trains under a strategy (a search trial, or the fit)."""
    from training.families import distributes
    from training.search import searched_families

    if config.searches:
        return any(distributes(family) for family in searched_families(config))
    return distributes(config.family)


def _trains_across_hosts(env: Environment, config: TrainingConfig, cluster: Cluster) -> bool:
    """Whether this job trains data-parallel across its hosts (logs who trains otherwise).

    Raises:
        ConfigError: A multi-instance job's train channel is sharded by S3 key.
    """
    if not cluster.multi_host:
        return False
    check_train_replicated(env.input_data_config)
    if config.distribution != CHIEF_ONLY and _may_distribute(config):
        return True
    if config.distribution == CHIEF_ONLY:
        why = "distribution=chief_only"
    else:
        why = f"model_type {config.model_type} does not train across instances"
    if cluster.is_chief:
        logger.info("%s: this host (the chief) trains alone on %d instances", why, len(env.hosts))
    else:
        logger.info(
            "%s: the chief %s trains alone; host %s exits", why, cluster.chief, env.current_host
        )
    return False


def _on_host(env: Environment | None, message: str) -> str:
    """``message``, prefixed with the host on a multi-instance job (whose host failed)."""
    if env is None or len(env.hosts) < 2:
        return message
    return f"host {env.current_host}: {message}"


def load_data(env: Environment, config: TrainingConfig) -> tuple[Any, Any]:
    """Read the channels and build the dataset (no TensorFlow).

    Returns:
        ``(dataset, test_negatives)``; the latter ``(users, held_out, negatives)`` or ``None``.

    Raises:
        DataError: A channel is missing, empty, unreadable or unusable.
    """
    from training import attributes, data, dataset, evaluation, recency

    columns = data.ColumnNames(
        user=config.user_column,
        item=config.item_column,
        rating=config.rating_column,
        timestamp=config.timestamp_column,
    )
    locations = {
        channel: env.channel_location(channel, getattr(config, f"{channel}_uri"))
        for channel in CHANNELS
    }
    if locations["train"] is None:
        raise DataError(
            "no train channel: give the job a channel named 'train' (input/data/train), "
            "or set the train_uri hyperparameter to an s3:// URI or a local path"
        )
    frames = {
        channel: None if location is None else data.read_interactions(location, columns, channel)
        for channel, location in locations.items()
        if channel in INTERACTION_CHANNELS
    }
    for channel, frame in frames.items():
        if frame is not None:
            logger.info(
                "read %d rows from channel %s (%s)", len(frame), channel, locations[channel]
            )
    negatives_frame = None
    if locations["test_negatives"] is not None:
        if config.feedback == "explicit":
            logger.warning("test_negatives is ignored with feedback=explicit (RMSE is reported)")
        else:
            negatives_frame = data.read_test_negatives(
                locations["test_negatives"], columns, "test_negatives"
            )
    items = attributes.read_attribute_channel(locations["items"], config, "item")
    users = attributes.read_attribute_channel(locations["users"], config, "user")
    # The negatives' ids join the vocabularies: a published split (ML-1M's) draws some
    # negatives from items that occur in no interaction channel.
    built = dataset.build_dataset(
        frames["train"],
        frames["validation"],
        frames["test"],
        feedback=config.feedback,
        min_rating=config.min_rating,
        seed=config.seed,
        test_negatives=negatives_frame,
        cold_item_ids=None if items is None else items[data.ITEM],
    )
    built = attributes.attach_attributes(built, items, users, config)
    if config.recency_half_life is not None:  # fails now, before TensorFlow, without timestamps
        recency.recency_weights(built.train, config.recency_half_life)
    if config.trending_window is not None:
        trending = recency.trending_counts(built.train, built.num_items, config.trending_window)
        built = replace(built, item_trending=trending)
    test_negatives = (
        None
        if negatives_frame is None
        else evaluation.resolve_test_negatives(negatives_frame, built)
    )
    logger.info("data: %s", built.statistics())
    return built, test_negatives


def run(env: Environment, started: float) -> int:
    """Train, export and report; returns the exit status."""
    stop_flag = stop_on_sigterm()
    config = TrainingConfig.from_hyperparameters(env.hyperparameters)
    cluster = Cluster.of(env.hosts, env.current_host)
    distributed = _trains_across_hosts(env, config, cluster)
    if cluster.multi_host and not distributed and not cluster.is_chief:
        return 0
    logger.info("configuration: %s", config.to_json())

    built, test_negatives = load_data(env, config)
    data_seconds = time.perf_counter() - started

    from training import export, report, trainer  # TensorFlow loads here, once the input is valid

    distribution = None
    if _may_distribute(config):
        from training.distributed import make_distribution

        local = cluster if distributed else Cluster.of([env.current_host], env.current_host)
        distribution = make_distribution(local, env.tf_config, config.collective_timeout)
        stop_on_sigterm(stop_flag)  # the strategy's coordination service took SIGTERM over
    result = trainer.train(
        config,
        built,
        env.checkpoint_dir,
        stop_flag,
        test_negatives=test_negatives,
        emit=_emit,
        distribution=distribution,
    )
    if distribution is not None and not distribution.is_chief:
        if not result.stopped:
            distribution.barrier("the chief's export (this host waits for it)", wait=True)
        logger.info(
            "host %s is done; the chief %s writes the model",
            env.current_host,
            cluster.chief,
        )
        return 0
    if result.stopped or result.model is None:
        logger.warning(
            "stopped by SIGTERM; checkpoint in %s; model/ not written", env.checkpoint_dir
        )
        return 0

    metrics = {
        "best_epoch": result.best_epoch,
        "validation": result.validation,
        "test": result.test,
    }
    # The learning curve of the fit that selected the epoch (held out), else the shipped one.
    curve = result.selection or result.fit
    scratch_parent = env.model_dir.parent if env.model_dir.parent.is_dir() else None
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".model-staging-", dir=scratch_parent))
    except OSError:
        scratch = Path(tempfile.mkdtemp(prefix="model-staging-"))
    try:
        export_started = time.perf_counter()
        # The shipped model's own training data: with the refit, train + validation (so the
        # popularity fallback counts the validation interactions too).
        artifacts = export.build_artifacts(
            result.model, result.config, result.objective.dataset, metrics
        )
        export.write_model(scratch, artifacts, result.model)
        export_seconds = time.perf_counter() - export_started
        timings = {
            **{f"{name}_seconds": value for name, value in result.timings.items()},
            "data_seconds": data_seconds,
            "export_seconds": export_seconds,
            "total_seconds": time.perf_counter() - started,
        }
        report.write_metrics(
            env.output_data_dir,
            {
                **result.report(),
                "history": curve.history,
                "resumed_from_epoch": curve.resumed_from_epoch,
                "early_stopped": curve.early_stopped,
                "config": config.to_json(),
                "data": built.statistics(),
                "timings": timings,
            },
        )
        report.write_training_report(
            env.output_data_dir,
            {
                "model_type": result.config.family,
                "feedback": config.feedback,
                "users": built.num_users,
                "items": built.num_items,
                "train interactions": len(built.train),
                "best epoch": result.best_epoch,
                "validation_constraint": config.validation_constraint or "none",
                "training seconds": round(timings.get("training_seconds", 0.0), 1),
                "total seconds": round(timings["total_seconds"], 1),
            },
            curve.history,
            curve.best_epoch,
            result.comparison,
            built.item_popularity,
            result.recommendation_counts,
            trials=[] if result.search is None else result.search.trials,
            trial_metric=result.objective.selection_metric,
            maximize=result.objective.is_better(1.0, 0.0),
        )
        publish_model_dir(scratch, env.model_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("model written to %s in %.1f s", env.model_dir, time.perf_counter() - started)
    if distribution is not None and cluster.multi_host:
        distribution.barrier("the end of the job (the other hosts wait for the chief)")
    return 0


def main() -> int:
    """Run one training job; never raises. Returns the process exit status."""
    started = time.perf_counter()
    _setup_logging()
    env: Environment | None = None
    # Known before anything is parsed, so a failure to parse still lands under SAGEMAKER_BASE_DIR.
    base_dir = base_dir_of(os.environ)
    try:
        env = Environment.from_environ()
        return run(env, started)
    except UserFacingError as error:
        message = _on_host(env, str(error).strip() or type(error).__name__)
        logger.error("training failed: %s", message)
        _write_failure(env, base_dir, f"{message}\n")
        return EXIT_USER_ERROR
    except BaseException as error:  # the one boundary: anything else is an internal fault
        if isinstance(error, KeyboardInterrupt | SystemExit) and not isinstance(error, Exception):
            logger.error("interrupted: %r", error)
        summary = _on_host(env, f"Internal error: {type(error).__name__}: {error}".splitlines()[0])
        summary = summary[: _FAILURE_REASON_LIMIT - 1]
        trace = traceback.format_exc()
        logger.error("%s\n%s", summary, trace)
        _write_failure(env, base_dir, f"{summary}\n\n{trace}")
        return EXIT_INTERNAL_ERROR
