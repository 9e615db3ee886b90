"""The ``ials`` family: ``implicit`` fitted iteration by iteration, exported as a dot product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from implicit.cpu.als import AlternatingLeastSquares
from ncf_test_support import single_fit_config
from threadpoolctl import threadpool_limits

from training.dataset import build_dataset
from training.evaluation import PopularityScorer
from training.families import family_for
from training.families.ials import FittedIals, IalsFamily, confidence_matrix
from training.objectives import objective_for
from training.signals import StopFlag
from training.synthetic import make_interactions
from training.trainer import train

#: Few factors and strong L2 for 200 users and 120 items.
SMALL = {"model_type": "ials", "ials_factors": 8, "ials_regularization": 5.0, "ials_iterations": 6}


def test_fit_learns_beyond_popularity_and_keeps_the_best_iteration(tmp_path: Path) -> None:
    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config(SMALL)
    assert isinstance(family_for("ials"), IalsFamily)
    lines: list[str] = []
    result = train(config, dataset, tmp_path, emit=lines.append)
    fit = result.fit
    assert isinstance(result.model, FittedIals)
    assert [record["epoch"] for record in fit.history] == [1, 2, 3, 4, 5, 6]
    assert sum(line.startswith("epoch=") for line in lines) == 6
    hrs = [record["hr"] for record in fit.history]
    assert fit.best_epoch == int(np.argmax(hrs)) + 1
    assert fit.validation["hr"] == max(hrs)
    popularity = objective_for(config, dataset).validation_metrics(
        PopularityScorer(dataset.item_popularity)
    )
    assert fit.validation["hr"] > popularity["hr"] + 0.1
    assert all(np.isfinite(record["train_loss"]) for record in fit.history)


def test_members_are_seeded_library_fits_whose_scores_are_averaged(tmp_path: Path) -> None:
    # ials_members=3: fits with seeds seed, seed + 1 and seed + 2, iterated in step; each
    # iteration's model (and so the kept one) scores the mean of the three members' scores.
    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config({**SMALL, "ials_iterations": 3, "ials_members": 3, "seed": 5})
    result = train(config, dataset, tmp_path, emit=lambda line: None)
    assert isinstance(result.model, FittedIals)
    kept = result.fit.best_epoch
    confidence = confidence_matrix(dataset, alpha=config.ials_alpha)
    members = []
    with threadpool_limits(1, "blas"):  # as implicit asks
        for seed in (5, 6, 7):
            member = AlternatingLeastSquares(
                factors=8, regularization=5.0, alpha=1.0, iterations=kept, random_state=seed
            )
            member.fit(confidence, show_progress=False)
            members.append(member.user_factors @ member.item_factors.T)
    users = np.arange(dataset.num_users)
    np.testing.assert_allclose(
        result.model.scorer.score_all_items(users), np.mean(members, axis=0), rtol=1e-3, atol=1e-4
    )
    assert not np.allclose(members[0], members[1], atol=1e-2)  # the seeds differ
    weights = result.model.model_weights()
    assert weights["gmf_item_embedding"].shape == (dataset.num_items, 24)


def test_iteration_by_iteration_is_the_library_fit() -> None:
    dataset = build_dataset(make_interactions(), None, None, seed=0)
    confidence = confidence_matrix(dataset, alpha=4.0)
    settings = {"factors": 8, "regularization": 5.0, "alpha": 1.0, "random_state": 3}
    with threadpool_limits(1, "blas"):  # as implicit asks
        whole = AlternatingLeastSquares(iterations=4, **settings)
        whole.fit(confidence, show_progress=False)
        stepwise = AlternatingLeastSquares(iterations=1, **settings)
        for _ in range(4):
            stepwise.fit(confidence, show_progress=False)
    np.testing.assert_allclose(stepwise.user_factors, whole.user_factors, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stepwise.item_factors, whole.item_factors, rtol=1e-4, atol=1e-6)


def test_confidence_is_one_plus_alpha_times_the_count() -> None:
    dataset = build_dataset(make_interactions(), None, None, seed=0)
    confidence = confidence_matrix(dataset, alpha=2.5)
    assert confidence.nnz == len(dataset.train)
    np.testing.assert_allclose(confidence.data, 3.5)
    users, items = dataset.train_seen.pairs()
    assert np.all(confidence[users, items] == 3.5)


def test_export_is_a_dot_product_in_the_gmf_weights() -> None:
    rng = np.random.default_rng(0)
    users = rng.normal(size=(7, 3)).astype(np.float32)
    items = rng.normal(size=(5, 3)).astype(np.float32)
    model = FittedIals(users, items)
    weights = model.model_weights()
    assert model.model_type == "ials" and model.output_activation == "linear"
    np.testing.assert_array_equal(weights["gmf_user_embedding"], users)
    np.testing.assert_array_equal(weights["gmf_item_embedding"], items)
    np.testing.assert_array_equal(weights["output_kernel"], np.ones((3, 1), np.float32))
    np.testing.assert_array_equal(weights["output_bias"], np.zeros(1, np.float32))
    np.testing.assert_allclose(
        model.scorer.score_all_items(np.arange(7)), users @ items.T, rtol=1e-6
    )
    pair_users, pair_items = np.array([[0, 6], [3, 3]]), np.array([[4, 0], [1, 2]])
    np.testing.assert_allclose(
        model.scorer.score_pairs(pair_users, pair_items),
        np.einsum("abd,abd->ab", users[pair_users], items[pair_items]),
        rtol=1e-6,
    )


def test_a_stop_between_iterations_publishes_nothing(tmp_path: Path) -> None:
    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config(SMALL)
    flag = StopFlag()
    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        flag.set()  # after the first iteration's metric line

    result = train(config, dataset, tmp_path, stop_flag=flag, emit=emit)
    assert result.stopped and result.model is None
    assert len(result.fit.history) == 1
    assert lines[-1].startswith("stopped by SIGTERM before ALS iteration 2")


def test_the_export_stores_the_first_stage_index_from_the_threshold_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trained model's export, with the threshold lowered to this catalog's size: the model
    # directory carries the index serving reads (and one item fewer would not).
    from ncf_contract import first_stage
    from ncf_contract.model_dir import load_model_dir
    from training import export

    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config(SMALL)
    result = train(config, dataset, tmp_path / "job", emit=lambda line: None)
    assert result.model is not None
    artifacts = export.build_artifacts(result.model, config, dataset, {})
    for threshold, stored in ((artifacts.num_items, True), (artifacts.num_items + 1, False)):
        monkeypatch.setattr(first_stage, "APPROXIMATE_FROM_ITEMS", threshold)
        scratch = tmp_path / f"model-{threshold}"
        export.write_model(scratch, artifacts, result.model)
        assert (scratch / first_stage.INDEX_FILE).is_file() is stored
        index = load_model_dir(scratch).first_stage_index
        assert (index is not None) is stored
        if index is not None:
            found = index.read(artifacts.weights, "ials", 0)
            factors = config.ials_factors * config.ials_members  # the members side by side
            assert (found.ntotal, found.d) == (artifacts.num_items, factors)
