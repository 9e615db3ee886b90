"""The ``ease`` family: the closed form, its scorer, the catalog-size guard, a real fit."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from ncf_test_support import single_fit_config

from ncf_contract.model_dir import ArtifactError, load_model_dir, save_model_dir
from ncf_contract.seen import SeenItems
from training import export
from training.dataset import build_dataset
from training.errors import ConfigError
from training.evaluation import PopularityScorer
from training.families import family_for
from training.families.ease import EaseFamily, EaseScorer, FittedEase, ease_weights
from training.objectives import objective_for
from training.signals import StopFlag
from training.synthetic import make_interactions
from training.trainer import train


def random_history(num_users: int = 40, num_items: int = 15, seed: int = 0) -> SeenItems:
    rng = np.random.default_rng(seed)
    cells = rng.random((num_users, num_items)) < 0.3
    users, items = np.nonzero(cells)
    return SeenItems.from_pairs(users, items, num_users, num_items)


def test_weights_are_the_closed_form_and_its_objective() -> None:
    history = random_history()
    x = history.matrix.toarray().astype(np.float64)
    l2 = 7.0
    weights, objective = ease_weights(history.matrix, l2)

    precision = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    expected = np.eye(x.shape[1]) - precision / np.diag(precision)[None, :]
    np.fill_diagonal(expected, 0.0)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.diag(weights) == 0)
    direct = np.sum((x - x @ expected) ** 2) + l2 * np.sum(expected**2)
    assert objective == pytest.approx(direct, rel=1e-9)


def test_weights_minimise_the_objective_with_a_zero_diagonal() -> None:
    history = random_history(seed=3)
    x = history.matrix.toarray().astype(np.float64)
    l2 = 2.0
    weights, objective = ease_weights(history.matrix, l2)
    rng = np.random.default_rng(1)
    for _ in range(5):
        nudged = weights.astype(np.float64) + rng.normal(scale=1e-2, size=weights.shape)
        np.fill_diagonal(nudged, 0.0)
        worse = np.sum((x - x @ nudged) ** 2) + l2 * np.sum(nudged**2)
        assert worse > objective


def test_scorer_is_history_times_weights() -> None:
    history = random_history()
    weights, _ = ease_weights(history.matrix, 3.0)
    scorer = EaseScorer(weights, history)
    expected = history.matrix.toarray().astype(np.float32) @ weights
    users = np.array([0, 5, 5, 39, 2])
    np.testing.assert_allclose(scorer.score_all_items(users), expected[users], rtol=1e-5)
    pair_users = np.array([[0, 0, 3], [7, 39, 1]])
    pair_items = np.array([[1, 14, 2], [0, 5, 9]])
    np.testing.assert_allclose(
        scorer.score_pairs(pair_users, pair_items),
        expected[pair_users, pair_items],
        rtol=1e-5,
        atol=1e-7,
    )


def test_scorer_pairs_span_several_user_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ncf_contract.ranking.ROW_BLOCK_USERS", 3)
    history = random_history(num_users=20)
    weights, _ = ease_weights(history.matrix, 3.0)
    expected = history.matrix.toarray().astype(np.float32) @ weights
    rng = np.random.default_rng(0)
    users, items = rng.integers(20, size=200), rng.integers(15, size=200)
    np.testing.assert_allclose(
        EaseScorer(weights, history).score_pairs(users, items),
        expected[users, items],
        rtol=1e-5,
        atol=1e-7,
    )


def test_fit_learns_beyond_popularity_and_exports_its_weights(tmp_path: Path) -> None:
    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config({"model_type": "ease", "ease_l2": 20.0})
    assert isinstance(family_for("ease"), EaseFamily)
    lines: list[str] = []
    result = train(config, dataset, tmp_path, emit=lines.append)
    model = result.model
    assert isinstance(model, FittedEase)
    assert result.fit.best_epoch == 1
    assert len(result.fit.history) == 1
    assert lines[0].startswith("epoch=1") and "val_hr@10" in lines[0]
    popularity = objective_for(config, dataset).validation_metrics(
        PopularityScorer(dataset.item_popularity)
    )
    assert result.fit.validation["hr"] > popularity["hr"] + 0.1
    weights = model.model_weights()
    assert set(weights) == {"ease_item_item"}
    assert weights["ease_item_item"].shape == (dataset.num_items, dataset.num_items)
    assert model.model_type == "ease" and model.output_activation == "linear"
    # Evaluation scores with the train split as history.
    users = np.arange(5)
    expected = dataset.train_seen.matrix.toarray().astype(np.float32) @ weights["ease_item_item"]
    np.testing.assert_allclose(model.scorer.score_all_items(users), expected[users], rtol=1e-5)


@pytest.mark.parametrize("model_type", ["ease", "blend"])
def test_an_oversized_catalog_is_refused_naming_the_limit_and_the_alternatives(
    model_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = build_dataset(make_interactions(), None, None, seed=0)  # 120 items
    config = single_fit_config({"model_type": model_type, "ease_max_items": 100})

    def must_not_run(*args: object) -> None:
        raise AssertionError("the guard must refuse before fitting")

    monkeypatch.setattr(f"training.families.{model_type}.ease_weights", must_not_run)
    with pytest.raises(ConfigError) as raised:
        train(config, dataset, tmp_path, emit=lambda line: None)
    message = str(raised.value)
    assert f"model_type={model_type} needs an items x items matrix" in message
    assert "120 items" in message
    assert "ease_max_items=100" in message
    assert "GiB" in message
    assert "model_type=ials" in message and "model_type=gmf" in message


def test_a_stop_before_the_fit_publishes_nothing(tmp_path: Path) -> None:
    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config({"model_type": "ease"})
    flag = StopFlag()
    flag.set()
    result = train(config, dataset, tmp_path, stop_flag=flag, emit=lambda line: None)
    assert result.stopped and result.model is None


@pytest.mark.parametrize("model_type", ["ease", "ials", "blend"])
def test_explicit_feedback_is_refused(model_type: str) -> None:
    with pytest.raises(ConfigError, match=f"model_type {model_type} learns from implicit"):
        single_fit_config({"model_type": model_type, "feedback": "explicit"})


def test_the_model_directory_contract_checks_the_item_item_matrix(tmp_path: Path) -> None:
    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config({"model_type": "ease"})
    weights, _ = ease_weights(dataset.train_seen.matrix, 20.0)
    good = export.build_artifacts(FittedEase(weights, dataset.train_seen), config, dataset, {})
    save_model_dir(tmp_path / "good", good)
    assert load_model_dir(tmp_path / "good").metadata.model_type == "ease"
    for bad_weights, problem in (
        ({}, "lacks ['ease_item_item']"),
        ({"ease_item_item": weights[:-1]}, "expected items x items"),
    ):
        bad = dataclasses.replace(good, weights=bad_weights)
        with pytest.raises(ArtifactError, match=re.escape(problem)):
            save_model_dir(tmp_path / "bad", bad)
