"""Training: fit the configured model family on the validation split, test it once.

``train`` is the whole of a training run between the data and the export:
the objective of the feedback kind (``training.objectives``) and the model
family (``training.families``) do the work; the test split is scored once, at
the end, with the selected model, and one ``final`` metric line is emitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ncf_contract.metric_lines import format_metric_line
from training.config import TrainingConfig
from training.dataset import Dataset
from training.families import FitContext, FitResult, FittedModel, family_for
from training.objectives import Objective, TestNegatives, objective_for
from training.signals import StopFlag


@dataclass
class TrainingResult:
    """What a training run produced.

    Attributes:
        fit: The family's fit (model, history, best epoch, validation metrics).
        objective: The objective it was fitted and judged with.
        test: Test metrics (``hr``, ``ndcg``, ``full_hr``, ``full_ndcg`` or ``rmse``);
            empty without a test channel.
        timings: Seconds per phase (the fit's, plus ``test``).
    """

    fit: FitResult
    objective: Objective
    test: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> FittedModel | None:
        """The selected model (``None`` when stopped)."""
        return self.fit.model

    @property
    def stopped(self) -> bool:
        """A SIGTERM stopped the run: nothing is to be published."""
        return self.fit.stopped


def train(
    config: TrainingConfig,
    dataset: Dataset,
    checkpoint_dir: Path,
    stop_flag: StopFlag | None = None,
    test_negatives: TestNegatives | None = None,
    emit: Callable[[str], None] = print,
) -> TrainingResult:
    """Fit ``config.model_type`` with validation-based selection, then evaluate the test split.

    Args:
        config: The typed configuration.
        dataset: Encoded interactions and splits.
        checkpoint_dir: Where checkpoints are read from and written to.
        stop_flag: Set by a SIGTERM handler; training stops at the next safe point.
        test_negatives: ``(users, held_out, negatives)`` from the ``test_negatives``
            channel, for the exact sampled test protocol.
        emit: Where metric lines go (stdout, where SageMaker reads them).
    """
    objective = objective_for(config, dataset)
    context = FitContext(checkpoint_dir, StopFlag() if stop_flag is None else stop_flag, emit)
    fit = family_for(config.model_type).fit(config, objective, context)
    result = TrainingResult(fit=fit, objective=objective, timings=dict(fit.timings))
    if fit.stopped or fit.model is None:
        return result
    started = time.perf_counter()
    result.test = objective.test_metrics(fit.model.scorer, test_negatives)
    result.timings["test"] = time.perf_counter() - started
    sampled = {k: v for k, v in result.test.items() if not k.startswith("full_")}
    full = {k: v for k, v in result.test.items() if k.startswith("full_")}
    emit(
        format_metric_line(
            "final",
            {
                "best_epoch": fit.best_epoch,
                **objective.log_keys(fit.validation, "val"),
                **objective.log_keys(sampled, "test"),
                **objective.log_keys(full, "test"),
            },
        )
    )
    return result
