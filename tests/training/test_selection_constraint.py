"""``validation_constraint``: the chosen epoch is the most accurate one that meets the bounds."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
from ncf_test_support import single_fit_config

from training.constraints import ConstraintNotMetError
from training.state import TrainingState


def higher(value: float, best: float | None) -> bool:
    return best is None or value > best


def weights_of(epoch: int) -> list[np.ndarray]:
    return [np.full(2, epoch)]


def test_an_ineligible_epoch_is_never_the_best() -> None:
    state = TrainingState()
    # (hr, meets the constraint): epoch 2 is the most accurate, but only 1 and 3 qualify.
    for epoch, (hr, eligible) in enumerate([(0.5, True), (0.9, False), (0.7, True)], start=1):
        state.record(
            {"epoch": epoch, "hr": hr},
            hr,
            higher,
            partial(weights_of, epoch),
            patience=0,
            eligible=eligible,
        )
    assert state.best_epoch == 3
    assert state.best_weights[0].tolist() == [3, 3]
    # Without the constraint the same epochs pick epoch 2.
    free = TrainingState()
    for epoch, hr in enumerate([0.5, 0.9, 0.7], start=1):
        free.record({"epoch": epoch, "hr": hr}, hr, higher, lambda: [], patience=0)
    assert free.best_epoch == 2


def test_ineligible_epochs_count_towards_early_stopping() -> None:
    state = TrainingState()
    for epoch, eligible in enumerate([True, False, False], start=1):
        state.record({"epoch": epoch}, epoch, higher, lambda: [], patience=2, eligible=eligible)
    assert state.best_epoch == 1 and state.early_stopped


keras = pytest.importorskip("keras")

from training.dataset import build_dataset  # noqa: E402
from training.synthetic import make_interactions  # noqa: E402
from training.trainer import TrainingResult, train  # noqa: E402

SETTINGS: dict[str, dict[str, object]] = {
    "gmf": {
        "model_type": "gmf",
        "epochs": 5,
        "learning_rate": 0.02,
        "learning_rate_decay": 1.0,
        "gmf_dim": 8,
        "batch_size": 256,
        "early_stopping_patience": 0,
    },
    "ials": {"model_type": "ials", "ials_iterations": 6, "ials_factors": 8},
}


def run(tmp_path: Path, name: str, constraint: str, family: str = "gmf") -> TrainingResult:
    config = single_fit_config({**SETTINGS[family], "validation_constraint": constraint})
    interactions = make_interactions(num_users=60, num_items=40, interactions_per_user=10)
    dataset = build_dataset(interactions, None, None, seed=config.seed)
    return train(config, dataset, tmp_path / name, emit=lambda line: None)


@pytest.mark.parametrize("family", ["gmf", "ials"])
def test_a_constraint_changes_the_chosen_epoch(tmp_path: Path, family: str) -> None:
    # "coverage>=0" holds for every epoch: the unconstrained choice, with coverage recorded.
    free = run(tmp_path, "free", "coverage>=0", family)
    history = free.fit.history
    chosen = free.fit.best_epoch
    assert chosen == max(history, key=lambda r: (r["hr"], -r["epoch"]))["epoch"]
    coverage = {int(r["epoch"]): r["coverage"] for r in history}
    others = [e for e in coverage if coverage[e] != coverage[chosen]]
    assert others, f"every epoch has the same coverage: {coverage}"
    # A bound just past the chosen epoch's coverage, on the side where other epochs lie.
    if any(coverage[e] > coverage[chosen] for e in others):
        bound = min(coverage[e] for e in others if coverage[e] > coverage[chosen])
        constraint, eligible = f"coverage>={bound!r}", {e for e in coverage if coverage[e] >= bound}
    else:
        bound = max(coverage[e] for e in others if coverage[e] < coverage[chosen])
        constraint, eligible = f"coverage<={bound!r}", {e for e in coverage if coverage[e] <= bound}
    constrained = run(tmp_path, "constrained", constraint, family)
    assert [r["hr"] for r in constrained.fit.history] == [r["hr"] for r in history]  # same run
    expected = int(
        max((r for r in history if r["epoch"] in eligible), key=lambda r: (r["hr"], -r["epoch"]))[
            "epoch"
        ]
    )
    assert constrained.fit.best_epoch == expected != chosen
    assert constrained.objective.meets_constraints(constrained.fit.validation)
    assert constrained.comparison["validation"]["model"]["coverage"] == pytest.approx(
        coverage[expected]
    )


@pytest.mark.parametrize("family", ["gmf", "ials"])
def test_no_epoch_meeting_the_constraint_is_a_user_facing_error(
    tmp_path: Path, family: str
) -> None:
    with pytest.raises(ConstraintNotMetError, match=r"coverage>=1\.5.*closest: coverage"):
        run(tmp_path, "impossible", "coverage>=1.5", family)


def test_item_attributes_give_intra_list_diversity_on_attributes(tmp_path: Path) -> None:
    from training.attributes import attach_attributes
    from training.synthetic import make_item_attributes

    config = single_fit_config(SETTINGS["ials"])
    dataset = build_dataset(make_interactions(), None, None, seed=config.seed)
    dataset = attach_attributes(dataset, make_item_attributes(), None, config)
    result = train(config, dataset, tmp_path, emit=lambda line: None)
    for split in result.comparison.values():
        for system in ("model", "popularity"):
            assert 0.0 <= split[system]["ild_attributes"] <= 1.0
            assert "ild" in split[system]
    # Items of one taste cluster share their genre and title word: a model that learned the
    # clusters recommends alike items, so its lists are less diverse in attributes.
    validation = result.comparison["validation"]
    assert validation["model"]["ild_attributes"] < validation["popularity"]["ild_attributes"]
