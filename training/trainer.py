"""Training: choose settings on the validation split, refit on everything, test once.

``train`` is the whole of a training run between the data and the export:

1. **Selection.** With ``tuning=auto`` a hyperparameter search
   (``training.search``) picks the family and settings on the validation split;
   otherwise the configured family is fitted once, with early stopping on the
   validation split.
2. **Refit.** With ``refit=true`` (the default) the chosen settings are fitted
   again on train + validation, for the selected number of epochs, so the
   shipped model also learns from each user's latest interactions. Its
   validation figures are then not held out; the report keeps the selected
   model's validation figures and says which model each figure comes from.
3. **Test, once**, with the shipped model, and a ``final`` metric line.
4. **Baselines**: the popularity baseline (implicit feedback; the mean rating for
   explicit feedback) on validation and test, and each model's lift over it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ncf_contract.families import ALS_FAMILIES, NCF_FAMILIES
from ncf_contract.metric_lines import format_metric_line
from ncf_contract.ranking import unit_item_vectors
from training.config import TrainingConfig
from training.constraints import ConstraintNotMetError
from training.dataset import Dataset
from training.evaluation import PopularityScorer
from training.families import FitContext, FitResult, FittedModel, distributes, family_for
from training.objectives import Objective, TestNegatives, objective_for
from training.search import SearchResult, run_search
from training.signals import StopFlag

logger = logging.getLogger(__name__)

REFIT_DIR = "refit"

#: ``{split: {system: {metric: value}}}``: the model beside the popularity baseline.
Comparison = dict[str, dict[str, dict[str, float]]]
if TYPE_CHECKING:
    from training.distributed import Distribution


@dataclass
class TrainingResult:
    """What a training run produced.

    Attributes:
        fit: The fit of the shipped model (the refit, or the selected fit).
        selection: The fit that chose the settings and epoch count, on train only
            (``None`` when a search chose them in an earlier process).
        config: The settings of the shipped model.
        objective: The objective the shipped model was fitted with.
        validation: Validation metrics of the selected model (held out).
        test: Test metrics of the shipped model; empty without a test channel.
        comparison: Per split (``validation``, ``test``), the model's and the
            popularity baseline's accuracy and beyond-accuracy figures side by side.
        recommendation_counts: Per split and system, ``[num_items]`` top-k lists
            each item is in (for the popularity-bias plot).
        search: The hyperparameter search, if one ran.
        refit: Whether the shipped model was refitted on train + validation.
        timings: Seconds per phase.
    """

    fit: FitResult
    objective: Objective
    config: TrainingConfig
    selection: FitResult | None = None
    validation: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    comparison: Comparison = field(default_factory=dict)
    recommendation_counts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    search: SearchResult | None = None
    refit: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> FittedModel | None:
        """The shipped model (``None`` when stopped)."""
        return self.fit.model

    @property
    def stopped(self) -> bool:
        """A SIGTERM stopped the run: nothing is to be published."""
        return self.fit.stopped or (self.search is not None and self.search.stopped)

    @property
    def best_epoch(self) -> int:
        """The selected epoch count (0 for families fitted in one go)."""
        if self.search is not None:
            return self.search.best_epoch
        return self.selection.best_epoch if self.selection is not None else self.fit.best_epoch

    @property
    def baselines(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{"popularity": {split: accuracy}}``: the baseline's accuracy where comparable."""
        accuracy = set(self.validation) | set(self.test)
        return {
            "popularity": {
                split: {k: v for k, v in systems["popularity"].items() if k in accuracy}
                for split, systems in self.comparison.items()
                if accuracy & set(systems["popularity"])
            }
        }

    def lift(self) -> dict[str, dict[str, float]]:
        """Per split, each accuracy metric's ratio over the popularity baseline, minus 1."""
        figures = {"validation": self.validation, "test": self.test}
        return {
            split: {
                name: figures[split][name] / value - 1.0
                for name, value in baseline.items()
                if name in figures[split] and value
            }
            for split, baseline in self.baselines["popularity"].items()
        }

    def report(self) -> dict[str, Any]:
        """The run's figures for ``metrics.json``, saying which model each comes from."""
        return {
            "best_epoch": self.best_epoch,
            "validation": self.validation,
            "test": self.test,
            "model_type": self.config.family,
            "chosen": self.config.to_json(),
            "searched": None if self.search is None else _searched(self.search),
            "figures_from": {
                "validation": "the selected model, trained on train (held out)",
                "test": (
                    "the shipped model, refitted on train + validation"
                    if self.refit
                    else "the shipped model, trained on train"
                ),
            },
            "refit": self.refit,
            "comparison": self.comparison,
            "baselines": self.baselines,
            "lift_over_popularity": self.lift(),
            "search": None
            if self.search is None
            else {
                "trials": self.search.trials,
                "best_trial": self.search.best_trial,
                "seconds": self.search.seconds,
            },
        }


def _log_chief_alone(chosen: TrainingConfig, refit: bool) -> None:
    """Log why the chief fits the chosen model alone after a search across hosts.

    Either the chosen family does not distribute, or (``refit=false``) the best trial
    is reloaded from the checkpoint that only the chief wrote.
    """
    why = "it does not distribute" if refit else "refit=false reloads the best trial"
    logger.info(
        "after the search, the chief fits model_type %s alone (%s); the other hosts wait",
        chosen.family,
        why,
    )


def _across_hosts(context: FitContext) -> bool:
    """Whether the fit runs under a strategy over several hosts."""
    return context.distribution is not None and context.distribution.cluster.multi_host


def _searched(search: SearchResult) -> dict[str, Any]:
    best = next((t for t in search.trials if t["number"] == search.best_trial), None)
    return {} if best is None else dict(best["params"])


def refit_settings(chosen: TrainingConfig, best_epoch: int) -> TrainingConfig:
    """The chosen settings for the refit: as many epochs or ALS iterations as selected."""
    refit_config, rounds = chosen, ""
    if chosen.family in NCF_FAMILIES:
        # A pre-trained NeuMF's epoch 0 is its fused towers before any fine-tuning.
        epochs = best_epoch if chosen.pretrain else max(1, best_epoch)
        refit_config = replace(chosen, epochs=epochs, early_stopping_patience=0)
        rounds = f" for {refit_config.epochs} epoch(s)"
    elif chosen.family in ALS_FAMILIES:
        refit_config = replace(chosen, ials_iterations=max(1, best_epoch))
        rounds = f" for {refit_config.ials_iterations} ALS iteration(s)"
    logger.info("refit: %s on train + validation%s", refit_config.family, rounds)
    return refit_config


def _fit(
    config: TrainingConfig, dataset: Dataset, context: FitContext
) -> tuple[FitResult, Objective]:
    objective = objective_for(config, dataset)
    return family_for(config.family).fit(config, objective, context), objective


def train(
    config: TrainingConfig,
    dataset: Dataset,
    checkpoint_dir: Path,
    stop_flag: StopFlag | None = None,
    test_negatives: TestNegatives | None = None,
    emit: Callable[[str], None] = print,
    distribution: Distribution | None = None,
) -> TrainingResult:
    """Select, refit, test and compare with the baseline; see the module docstring.

    Args:
        config: The typed configuration.
        dataset: Encoded interactions and splits.
        checkpoint_dir: Where checkpoints (and the search's journal) are read and written.
        stop_flag: Set by a SIGTERM handler; training stops at the next safe point.
        test_negatives: ``(users, held_out, negatives)`` from the ``test_negatives``
            channel, for the exact sampled test protocol.
        emit: Where metric lines go (stdout, where SageMaker reads them).
        distribution: The strategy to fit under (``None``: one process); only its
            chief tests the model.
    """
    context = FitContext(
        checkpoint_dir,
        StopFlag() if stop_flag is None else stop_flag,
        emit,
        distribution=distribution,
    )
    timings: dict[str, float] = {}
    started = time.perf_counter()
    search: SearchResult | None = None
    selection: FitResult | None = None
    if config.searches:
        search = run_search(config, dataset, context)
        timings["search"] = time.perf_counter() - started
        chosen = search.config
        if search.stopped or search.best_trial < 0:
            stopped = FitResult(model=None, stopped=True)
            return TrainingResult(
                stopped, objective_for(config, dataset), config, search=search, timings=timings
            )
        validation, best_epoch = search.validation, search.best_epoch
        (emit if context.is_chief else logger.info)(
            f"search chose trial {search.best_trial}: {search.params}"
        )
    else:
        chosen = config
        selection, objective = _fit(chosen, dataset, context)
        timings.update(selection.timings)
        if selection.stopped:
            return TrainingResult(selection, objective, chosen, timings=timings)
        if not objective.meets_constraints(selection.validation):
            raise ConstraintNotMetError(config.selection_constraints, selection.history)
        validation, best_epoch = selection.validation, selection.best_epoch

    refit = config.refit
    if search is not None and _across_hosts(context) and not (refit and distributes(chosen.family)):
        _log_chief_alone(chosen, refit)
        if not context.is_chief:
            return TrainingResult(
                FitResult(model=None),
                objective_for(chosen, dataset),
                chosen,
                validation=dict(validation),
                search=search,
                refit=refit,
                timings=timings,
            )
        context = replace(context, distribution=None)
    if refit:
        refit_started = time.perf_counter()
        refit_config = refit_settings(chosen, best_epoch)
        final, objective = _fit(
            refit_config,
            dataset.with_validation_in_train(),
            # Its epoch lines stay out of the job's metrics: its validation is not held out.
            replace(
                context,
                checkpoint_dir=checkpoint_dir / REFIT_DIR,
                select_best=False,
                emit=logger.debug,
            ),
        )
        timings["refit"] = time.perf_counter() - refit_started
    elif selection is not None:
        final, objective = selection, objective_for(chosen, dataset)
    else:  # the best trial again: an NCF trial reloads its finished checkpoint
        assert search is not None and search.checkpoint_dir is not None
        best_trial = replace(context, checkpoint_dir=search.checkpoint_dir)
        final, objective = _fit(chosen, dataset, best_trial)
    result = TrainingResult(
        final,
        objective,
        chosen,
        selection=selection,
        validation=dict(validation),
        search=search,
        refit=refit,
        timings=timings,
    )
    if not (final.stopped or final.model is None or not context.is_chief):
        _test(result, test_negatives, objective_for(chosen, dataset), emit)
    return result


def _test(
    result: TrainingResult,
    test_negatives: TestNegatives | None,
    held_out: Objective,
    emit: Callable[[str], None],
) -> None:
    """Test the shipped model once, compare it with popularity, emit the ``final`` line."""
    assert result.model is not None
    objective, timings = result.objective, result.timings
    test_started = time.perf_counter()
    result.test = objective.test_metrics(result.model.scorer, test_negatives)
    timings["test"] = time.perf_counter() - test_started
    started = time.perf_counter()
    compare_with_popularity(result, test_negatives, held_out)
    timings["beyond_accuracy"] = time.perf_counter() - started
    sampled = {k: v for k, v in result.test.items() if not k.startswith("full_")}
    full = {k: v for k, v in result.test.items() if k.startswith("full_")}
    emit(
        format_metric_line(
            "final",
            {
                "best_epoch": result.best_epoch,
                **objective.log_keys(result.validation, "val"),
                **objective.log_keys(sampled, "test"),
                **objective.log_keys(full, "test"),
            },
        )
    )
    logger.info("popularity baseline: %s", result.baselines["popularity"])


def item_vectors_of(model: FittedModel) -> np.ndarray | None:
    """The model's unit item vectors (``ncf_contract.ranking``), or ``None`` if it has none."""
    try:
        return unit_item_vectors(model.model_weights())
    except ValueError:
        return None


def compare_with_popularity(
    result: TrainingResult, test_negatives: TestNegatives | None, held_out: Objective
) -> None:
    """Fill ``result.comparison`` and ``result.recommendation_counts`` for each split.

    The model's accuracy is the selected model's validation figures and the
    shipped model's test figures; the popularity baseline's is measured the same
    way (where it means something: ``Objective.popularity_accuracy_comparable``),
    on validation with ``held_out`` (training data only, the validation split held
    out) and on test with the shipped model's objective. Both systems' top-k lists
    (the shipped model's) get every beyond-accuracy figure.
    """
    model = result.model
    assert model is not None
    vectors = item_vectors_of(model)
    for split, accuracy in (("validation", result.validation), ("test", result.test)):
        objective = held_out if split == "validation" else result.objective
        popularity = PopularityScorer(objective.dataset.item_popularity)
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
