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

import numpy as np

from ncf_contract.metric_lines import format_metric_line
from ncf_contract.ranking import unit_item_vectors
from training.config import TrainingConfig
from training.constraints import ConstraintNotMetError
from training.dataset import Dataset
from training.evaluation import PopularityScorer
from training.families import FitContext, FitResult, FittedModel, family_for
from training.objectives import Objective, TestNegatives, objective_for
from training.signals import StopFlag

#: ``{split: {system: {metric: value}}}``: the model beside the popularity baseline.
Comparison = dict[str, dict[str, dict[str, float]]]


@dataclass
class TrainingResult:
    """What a training run produced.

    Attributes:
        fit: The family's fit (model, history, best epoch, validation metrics).
        objective: The objective it was fitted and judged with.
        test: Test metrics (``hr``, ``ndcg``, ``full_hr``, ``full_ndcg`` or ``rmse``);
            empty without a test channel.
        comparison: Per split (``validation``, ``test``), the model's and the
            popularity baseline's accuracy and beyond-accuracy figures side by side.
        recommendation_counts: Per split and system, ``[num_items]`` top-k lists
            each item is in (for the popularity-bias plot).
        timings: Seconds per phase (the fit's, plus ``test`` and ``beyond_accuracy``).
    """

    fit: FitResult
    objective: Objective
    test: dict[str, float] = field(default_factory=dict)
    comparison: Comparison = field(default_factory=dict)
    recommendation_counts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
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
    if not objective.meets_constraints(fit.validation):
        raise ConstraintNotMetError(config.selection_constraints, fit.history)
    started = time.perf_counter()
    result.test = objective.test_metrics(fit.model.scorer, test_negatives)
    result.timings["test"] = time.perf_counter() - started
    started = time.perf_counter()
    compare_with_popularity(result, test_negatives)
    result.timings["beyond_accuracy"] = time.perf_counter() - started
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


def item_vectors_of(model: FittedModel) -> np.ndarray | None:
    """The model's unit item vectors (``ncf_contract.ranking``), or ``None`` if it has none."""
    try:
        return unit_item_vectors(model.model_weights())
    except ValueError:
        return None


def compare_with_popularity(result: TrainingResult, test_negatives: TestNegatives | None) -> None:
    """Fill ``result.comparison`` and ``result.recommendation_counts`` for each split.

    The model's accuracy is the fit's validation and the test metrics; the
    popularity baseline's is measured the same way (where it means something:
    ``Objective.popularity_accuracy_comparable``). Both systems' top-k lists
    get every beyond-accuracy figure.
    """
    model, objective = result.model, result.objective
    assert model is not None
    popularity = PopularityScorer(objective.dataset.item_popularity)
    vectors = item_vectors_of(model)
    for split, accuracy in (("validation", result.fit.validation), ("test", result.test)):
        lists = objective.list_comparison(model.scorer, vectors, split)
        if lists is None:
            continue
        baseline: dict[str, float] = {}
        if objective.popularity_accuracy_comparable:
            baseline = (
                objective.validation_accuracy(popularity)
                if split == "validation"
                else objective.test_metrics(popularity, test_negatives)
            )
        result.comparison[split] = {
            "model": {**accuracy, **lists.metrics["model"]},
            "popularity": {**baseline, **lists.metrics["popularity"]},
        }
        result.recommendation_counts[split] = lists.recommendation_counts
