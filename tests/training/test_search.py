"""The in-job hyperparameter search, the refit on train + validation, and the baselines."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ncf_test_support import SageMakerLayout, run_container_script

from training import trainer
from training.config import TrainingConfig
from training.dataset import Dataset, build_dataset
from training.families import FitContext, FitResult, family_for
from training.objectives import Objective
from training.search import JOURNAL_FILE, SEARCH_DIR, run_search, suggest
from training.signals import StopFlag
from training.synthetic import make_interactions

#: Small, quick trials: GMF on a tiny catalogue.
QUICK = {"model_type": "gmf", "epochs": 2, "batch_size": 64, "full_ranking": False}


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build_dataset(
        make_interactions(num_users=60, num_items=40, interactions_per_user=10), None, None
    )


def config_of(**hyperparameters: Any) -> TrainingConfig:
    return TrainingConfig.from_hyperparameters({**QUICK, **hyperparameters})


def test_explicit_hyperparameters_are_never_searched(dataset: Dataset, tmp_path: Path) -> None:
    config = config_of(tuning_trials=3, learning_rate=0.01, gmf_dim=8)
    result = run_search(config, dataset, FitContext(tmp_path, emit=lambda line: None))
    assert len(result.trials) == 3
    for trial in result.trials:
        assert trial["state"] in ("complete", "pruned")
        assert {"learning_rate", "gmf_dim", "model_type"}.isdisjoint(trial["params"])
        assert "gmf_regularization" in trial["params"]
    assert result.config.learning_rate == 0.01 and result.config.gmf_dim == 8
    assert result.config.model_type == "gmf"
    best = next(t for t in result.trials if t["number"] == result.best_trial)
    assert result.config.gmf_regularization == best["params"]["gmf_regularization"]


def test_model_type_auto_lets_the_search_choose_the_family() -> None:
    import optuna

    config = TrainingConfig.from_hyperparameters({})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    families = {suggest(study.ask(), config)["model_type"] for _ in range(40)}
    assert {"gmf", "neumf"} <= families
    explicit = TrainingConfig.from_hyperparameters({"feedback": "explicit"})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    from ncf_contract.families import NCF_FAMILIES

    assert all(suggest(study.ask(), explicit)["model_type"] in NCF_FAMILIES for _ in range(20)), (
        "rating prediction searches the NCF families only"
    )


@pytest.mark.parametrize(
    ("hyperparameters", "draws_negatives"),
    [
        ({"model_type": "gmf", "loss": "softmax"}, False),
        ({"model_type": "gmf", "loss": "pointwise"}, True),
        ({"model_type": "neumf"}, True),
        ({"model_type": "neumf", "loss": "softmax"}, False),
    ],
)
def test_num_negatives_is_searched_only_for_the_pointwise_loss(
    hyperparameters: dict, draws_negatives: bool
) -> None:
    import optuna

    config = TrainingConfig.from_hyperparameters(hyperparameters)
    params = suggest(optuna.create_study().ask(), config)
    assert ("num_negatives" in params) is draws_negatives
    assert "learning_rate" in params
    assert "loss" not in params  # given, so never searched


def test_with_loss_auto_the_search_chooses_gmf_s_loss() -> None:
    import optuna

    config = TrainingConfig.from_hyperparameters({"model_type": "gmf"})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [suggest(study.ask(), config) for _ in range(30)]
    assert {params["loss"] for params in drawn} == {"pointwise", "softmax"}
    for params in drawn:
        assert ("num_negatives" in params) is (params["loss"] == "pointwise")
    neumf = suggest(study.ask(), TrainingConfig.from_hyperparameters({"model_type": "neumf"}))
    assert "loss" not in neumf


def test_the_search_keeps_to_its_budget(dataset: Dataset, tmp_path: Path) -> None:
    config = config_of(tuning_trials=1000, tuning_budget=4.0, epochs=3)
    result = run_search(config, dataset, FitContext(tmp_path, emit=lambda line: None))
    longest = max(t["seconds"] or 0.0 for t in result.trials)
    assert result.best_trial >= 0
    assert len(result.trials) < 1000
    # Checked between trials and between epochs: at most one trial's worth over.
    assert result.seconds <= config.tuning_budget + longest + 1.0


def test_a_resumed_search_does_not_redo_finished_trials(dataset: Dataset, tmp_path: Path) -> None:
    lines: list[str] = []
    first = run_search(config_of(tuning_trials=2), dataset, FitContext(tmp_path, emit=lines.append))
    assert (tmp_path / SEARCH_DIR / JOURNAL_FILE).is_file()
    second = run_search(
        config_of(tuning_trials=4), dataset, FitContext(tmp_path, emit=lines.append)
    )
    assert "resuming the hyperparameter search: 2 trial(s) done" in "\n".join(lines)
    assert len(second.trials) == 4
    assert second.trials[:2] == first.trials
    trial_lines = [line for line in lines if line.startswith("trial=")]
    assert [line.split()[0] for line in trial_lines] == [f"trial={n}" for n in range(4)]


def test_a_trial_cut_off_by_sigterm_is_run_again_after_a_restart(
    dataset: Dataset, tmp_path: Path
) -> None:
    class SigtermDuringTrialOne(StopFlag):
        """Set once trial 0 has reported and the search has moved on (the 2nd check)."""

        checks = 0
        armed = False

        def __bool__(self) -> bool:
            if self.armed:
                self.checks += 1
            return self.checks >= 2

    stop = SigtermDuringTrialOne()
    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        if line.startswith("trial=0 "):
            stop.armed = True

    config = config_of(tuning_trials=3)
    stopped = run_search(config, dataset, FitContext(tmp_path, stop_flag=stop, emit=emit))
    assert stopped.stopped
    resumed = run_search(config, dataset, FitContext(tmp_path, emit=lines.append))
    assert not resumed.stopped
    states = [t["state"] for t in resumed.trials]
    assert states[:2] == ["complete", "fail"]
    # The cut-off trial's settings run again as the next trial; 3 trials end in all.
    assert resumed.trials[2]["params"] == resumed.trials[1]["params"]
    assert states.count("complete") + states.count("pruned") == 3


def test_the_refit_trains_on_train_plus_validation(
    dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, bool]] = []

    class Recording:
        def fit(self, config: TrainingConfig, objective: Objective, context: FitContext) -> Any:
            seen.append((len(objective.dataset.train), context.select_best))
            return family_for("gmf").fit(config, objective, context)

    monkeypatch.setattr(trainer, "family_for", lambda name: Recording())
    config = replace(config_of(tuning="off", epochs=3, early_stopping_patience=0), refit=True)
    result = trainer.train(config, dataset, tmp_path, emit=lambda line: None)
    assert seen == [
        (len(dataset.train), True),
        (len(dataset.train) + len(dataset.validation), False),
    ]
    assert result.refit and result.fit is not result.selection
    # The refit runs the selected number of epochs and keeps the last.
    assert result.selection is not None
    assert result.fit.best_epoch == result.selection.best_epoch == len(result.fit.history)
    assert result.validation == result.selection.validation  # type: ignore[union-attr]
    assert "refitted on train + validation" in result.report()["figures_from"]["test"]


@pytest.mark.parametrize("model_type", ["ials", "blend"])
def test_an_als_refit_runs_the_selected_iterations_and_keeps_the_last(
    model_type: str, dataset: Dataset, tmp_path: Path
) -> None:
    config = replace(
        config_of(tuning="off", model_type=model_type, ials_factors=8, ials_iterations=6),
        refit=True,
    )
    result = trainer.train(config, dataset, tmp_path, emit=lambda line: None)
    assert result.selection is not None and len(result.selection.history) == 6
    selected = result.selection.best_epoch
    assert 1 <= selected <= 6
    assert len(result.fit.history) == selected == result.fit.best_epoch


def test_with_validation_in_train_adds_the_held_out_rows(dataset: Dataset) -> None:
    folded = dataset.with_validation_in_train()
    assert len(folded.train) == len(dataset.train) + len(dataset.validation)
    users, items = dataset.validation.user_index, dataset.validation.item_index
    assert folded.train_seen.contains(users, items).all()
    assert not dataset.train_seen.contains(users, items).any()
    assert folded.item_popularity.sum() == len(folded.train)
    np.testing.assert_array_equal(folded.validation.item_index, items)


def test_popularity_baseline_and_lift(dataset: Dataset, tmp_path: Path) -> None:
    config = config_of(tuning="off", refit=False)
    test_frame = make_interactions(num_users=60, num_items=40, interactions_per_user=2, seed=5)
    with_test = build_dataset(
        make_interactions(num_users=60, num_items=40, interactions_per_user=10), None, test_frame
    )
    result = trainer.train(config, with_test, tmp_path, emit=lambda line: None)
    popularity = result.baselines["popularity"]
    assert set(popularity) == {"validation", "test"}
    assert set(popularity["validation"]) == {"hr", "ndcg"}
    lift = result.lift()
    assert lift["validation"]["hr"] == pytest.approx(
        result.validation["hr"] / popularity["validation"]["hr"] - 1
    )


@pytest.mark.slow
def test_default_training_job_searches_refits_and_reports(
    sagemaker_layout: SageMakerLayout,
) -> None:
    sagemaker_layout.write_channel("train", make_interactions())
    sagemaker_layout.write_config({"tuning_trials": 4, "tuning_budget": 120, "epochs": 2})
    result = run_container_script("train", sagemaker_layout.base_dir, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sum(line.startswith("trial=") for line in result.stdout.splitlines()) == 4
    assert "search chose trial" in result.stdout
    report = json.loads((sagemaker_layout.output_data_dir / "metrics.json").read_text())
    assert len(report["search"]["trials"]) == 4
    assert report["refit"] is True
    assert set(report["baselines"]["popularity"]["validation"]) == {"hr", "ndcg"}
    assert "hr" in report["lift_over_popularity"]["validation"]
    assert report["chosen"]["model_type"] in ("gmf", "neumf", "ials", "ease", "blend")
    metadata = json.loads((sagemaker_layout.model_dir / "metadata.json").read_text())
    assert metadata["model_type"] == report["chosen"]["model_type"]


def test_fit_result_of_a_stopped_run_has_no_model() -> None:
    assert FitResult(model=None, stopped=True).model is None


def test_the_search_starts_with_each_family_at_its_defaults(
    dataset: Dataset, tmp_path: Path
) -> None:
    from training.search import AUTO_FAMILIES

    config = TrainingConfig.from_hyperparameters({"tuning_trials": 3, "full_ranking": False})
    result = run_search(config, dataset, FitContext(tmp_path, emit=lambda line: None))
    assert AUTO_FAMILIES[:3] == ("ease", "ials", "blend"), "the closed-form families come first"
    assert [t["params"]["model_type"] for t in result.trials] == ["ease", "ials", "blend"]
    assert result.trials[0]["params"]["ease_l2"] == config.ease_l2
    assert result.trials[1]["params"]["ials_factors"] == config.ials_factors
    assert result.trials[2]["params"]["blend_ease_weight"] == config.blend_ease_weight


def test_the_search_honours_the_validation_constraint(dataset: Dataset, tmp_path: Path) -> None:
    from training.search import SearchFailedError

    lines: list[str] = []
    impossible = config_of(tuning_trials=2, validation_constraint="coverage>=1.01")
    with pytest.raises(SearchFailedError, match="no trial of the hyperparameter search"):
        run_search(impossible, dataset, FitContext(tmp_path / "a", emit=lines.append))
    assert sum("misses validation_constraint coverage>=1.01" in line for line in lines) == 2
    met = config_of(tuning_trials=2, validation_constraint="coverage>=0.01")
    result = run_search(met, dataset, FitContext(tmp_path / "b", emit=lines.append))
    assert result.best_trial >= 0 and result.validation["coverage"] >= 0.01


def test_the_hybrid_joins_an_automatic_search_when_there_are_attributes() -> None:
    from types import SimpleNamespace

    from training.search import AUTO_FAMILIES, searched_families

    config = TrainingConfig.from_hyperparameters({})
    plain: Any = SimpleNamespace(item_attributes=None, user_attributes=None, num_items=100)
    with_items: Any = SimpleNamespace(item_attributes=object(), user_attributes=None, num_items=100)
    assert searched_families(config, plain) == AUTO_FAMILIES
    assert searched_families(config, with_items) == (*AUTO_FAMILIES, "hybrid")


def test_an_automatic_search_leaves_out_item_item_families_above_ease_max_items() -> None:
    # Issue 16: an ML-20M-shaped catalog (26,744 items) with the default hyperparameters
    # failed the job on the search's first trial (EASE refuses above ease_max_items).
    from types import SimpleNamespace

    from training.search import AUTO_FAMILIES, searched_families

    config = TrainingConfig.from_hyperparameters({})
    large: Any = SimpleNamespace(
        item_attributes=None, user_attributes=None, num_items=config.ease_max_items + 1
    )
    families = searched_families(config, large)
    assert "ease" in AUTO_FAMILIES and "blend" in AUTO_FAMILIES
    assert families == tuple(f for f in AUTO_FAMILIES if f not in ("ease", "blend"))
    at_limit: Any = SimpleNamespace(
        item_attributes=None, user_attributes=None, num_items=config.ease_max_items
    )
    assert searched_families(config, at_limit) == AUTO_FAMILIES


def test_the_pruner_judges_a_trial_against_its_own_family_only() -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from training.search import FamilyMedianPruner

    families = CategoricalDistribution(["blend", "gmf"])

    def trial(family: str, curve: list[float], state: TrialState) -> optuna.trial.FrozenTrial:
        return create_trial(
            params={"model_type": family},
            distributions={"model_type": families},
            value=curve[-1] if state == TrialState.COMPLETE else None,
            intermediate_values=dict(enumerate(curve, start=1)),
            state=state,
        )

    study = optuna.create_study(direction="maximize")
    study.add_trial(trial("blend", [0.80, 0.82, 0.83, 0.84], TrialState.COMPLETE))
    study.add_trial(trial("blend", [0.79, 0.81, 0.82, 0.83], TrialState.COMPLETE))
    pruner = FamilyMedianPruner(n_startup_trials=1, n_warmup_steps=2)
    # A slow starter of another family is not cut by the fast family's median...
    slow_gmf = trial("gmf", [0.55, 0.62, 0.70], TrialState.RUNNING)
    assert not pruner.prune(study, slow_gmf)
    # ...but by its own family's, once one of its trials has finished.
    study.add_trial(trial("gmf", [0.60, 0.70, 0.76, 0.80], TrialState.COMPLETE))
    assert pruner.prune(study, slow_gmf)
    assert not pruner.prune(study, trial("gmf", [0.62, 0.72, 0.77], TrialState.RUNNING))
    assert pruner.prune(study, trial("blend", [0.70, 0.75, 0.78], TrialState.RUNNING))


def test_a_trial_that_repeats_earlier_settings_reuses_their_figures(
    dataset: Dataset, tmp_path: Path
) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from training.search import study_name

    lines: list[str] = []
    first = run_search(config_of(tuning_trials=1), dataset, FitContext(tmp_path, emit=lines.append))
    journal = JournalFileBackend(str(tmp_path / SEARCH_DIR / JOURNAL_FILE))
    study = optuna.load_study(
        study_name=study_name(config_of(), dataset), storage=JournalStorage(journal)
    )
    study.enqueue_trial(first.trials[0]["params"])
    second = run_search(
        config_of(tuning_trials=2), dataset, FitContext(tmp_path, emit=lines.append)
    )
    # No second fit: on several hosts, only the chief holds the first one's checkpoint.
    assert "trial=1 repeats the settings of trial 0" in lines
    assert second.trials[1]["value"] == first.trials[0]["value"]
    assert second.trials[1]["best_epoch"] == first.trials[0]["best_epoch"]
