"""The Keras NCF models: shapes, the documented formula and the config round trip."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.families.ncf_model import NCF  # noqa: E402


def _numpy_scores(weights: dict[str, np.ndarray], model_type: str, users, items) -> np.ndarray:
    parts = []
    if model_type in ("gmf", "neumf"):
        parts.append(weights["gmf_user_embedding"][users] * weights["gmf_item_embedding"][items])
    if model_type in ("mlp", "neumf"):
        hidden = np.concatenate(
            [weights["mlp_user_embedding"][users], weights["mlp_item_embedding"][items]], axis=1
        )
        layer = 0
        while f"mlp_kernel_{layer}" in weights:
            hidden = np.maximum(
                hidden @ weights[f"mlp_kernel_{layer}"] + weights[f"mlp_bias_{layer}"], 0
            )
            layer += 1
        parts.append(hidden)
    logits = (
        np.concatenate(parts, axis=1) @ weights["output_kernel"][:, 0] + weights["output_bias"][0]
    )
    return 1 / (1 + np.exp(-logits))


@pytest.mark.parametrize("model_type", ["gmf", "mlp", "neumf"])
def test_shapes_and_formula(model_type: str) -> None:
    model = NCF(12, 9, model_type, gmf_dim=4, mlp_layers=(8, 6, 3)).build_all()
    # Non-trivial weights so the formula is really exercised.
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    weights = model.export_weights()
    expected_names = {"output_kernel", "output_bias"}
    if model_type != "mlp":
        expected_names |= {"gmf_user_embedding", "gmf_item_embedding"}
    if model_type != "gmf":
        expected_names |= {"mlp_user_embedding", "mlp_item_embedding"}
        expected_names |= {f"mlp_{kind}_{layer}" for kind in ("kernel", "bias") for layer in (0, 1)}
    assert set(weights) == expected_names
    width = {"gmf": 4, "mlp": 3, "neumf": 7}[model_type]
    assert weights["output_kernel"].shape == (width, 1)
    assert weights["output_bias"].shape == (1,)
    if model_type != "gmf":
        assert weights["mlp_user_embedding"].shape == (12, 4)
        assert weights["mlp_kernel_0"].shape == (8, 6)
    assert model.num_mlp_layers == (0 if model_type == "gmf" else 2)

    users = np.array([0, 3, 11, 5])
    items = np.array([8, 0, 2, 5])
    scores = keras.ops.convert_to_numpy(model((users, items)))
    assert scores.shape == (4, 1)
    np.testing.assert_allclose(
        scores[:, 0], _numpy_scores(weights, model_type, users, items), rtol=1e-5, atol=1e-6
    )


def test_get_config_round_trip() -> None:
    model = NCF(
        5, 4, "neumf", gmf_dim=3, mlp_layers=(6, 2), dropout=0.1, output_activation="linear"
    )
    clone = NCF.from_config(model.get_config()).build_all()
    assert clone.get_config() == model.get_config()
    assert clone.output_activation == "linear"


def test_pretrained_neumf_combines_the_towers() -> None:
    gmf = NCF(5, 4, "gmf", gmf_dim=3, mlp_layers=(6, 2)).build_all()
    mlp = NCF(5, 4, "mlp", gmf_dim=3, mlp_layers=(6, 2)).build_all()
    neumf = NCF(5, 4, "neumf", gmf_dim=3, mlp_layers=(6, 2)).build_all()
    neumf.load_pretrained(gmf, mlp)
    weights, gmf_w, mlp_w = neumf.export_weights(), gmf.export_weights(), mlp.export_weights()
    np.testing.assert_allclose(weights["gmf_user_embedding"], gmf_w["gmf_user_embedding"])
    np.testing.assert_allclose(weights["mlp_kernel_0"], mlp_w["mlp_kernel_0"])
    np.testing.assert_allclose(
        weights["output_kernel"],
        np.concatenate([0.5 * gmf_w["output_kernel"], 0.5 * mlp_w["output_kernel"]]),
    )


def test_unknown_model_type() -> None:
    with pytest.raises(ValueError, match="deepfm"):
        NCF(2, 2, "deepfm")


def test_regularisation_penalises_only_the_looked_up_rows() -> None:
    model = NCF(
        6, 5, "neumf", gmf_dim=3, mlp_layers=(4, 2), gmf_regularization=0.5, mlp_regularization=0.25
    ).build_all()
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    users, items = np.array([0, 0, 3]), np.array([1, 4, 4])
    weights = model.export_weights()

    def row_norms(tower: str) -> np.ndarray:
        user_rows = weights[f"{tower}_user_embedding"][users]
        item_rows = weights[f"{tower}_item_embedding"][items]
        return (user_rows**2).sum(axis=1) + (item_rows**2).sum(axis=1)

    kernel_penalty = 0.25 * (weights["mlp_kernel_0"] ** 2).sum()
    expected = 0.5 * row_norms("gmf").mean() + 0.25 * row_norms("mlp").mean() + kernel_penalty

    model((users, items), training=True)
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)) == (
        pytest.approx(float(expected), rel=1e-5)
    )
    model((users, items), training=False)
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)) == (
        pytest.approx(float(kernel_penalty), rel=1e-5)
    )


@pytest.mark.parametrize("examples", [10, 12, 3])
def test_pre_batched_epochs_hold_the_same_batches_as_per_example_batching(examples: int) -> None:
    import tensorflow as tf

    from training.families.ncf import batched_dataset

    rng = np.random.default_rng(0)
    arrays = (
        (np.arange(examples, dtype=np.int32), rng.integers(0, 9, examples).astype(np.int32)),
        rng.random((examples, 1)).astype(np.float32),
        rng.random(examples).astype(np.float32),
    )
    expected = list(tf.data.Dataset.from_tensor_slices(arrays).batch(4).as_numpy_iterator())
    with batched_dataset(arrays, 4) as data:
        found = list(data.as_numpy_iterator())
        assert data.cardinality() == len(found)
    assert len(found) == len(expected) == -(-examples // 4)
    for got, want in zip(found, expected, strict=True):
        for got_array, want_array in zip(tf.nest.flatten(got), tf.nest.flatten(want), strict=True):
            np.testing.assert_array_equal(got_array, want_array)


def test_an_epoch_s_arrays_are_let_go_when_its_dataset_block_ends() -> None:
    # Issue 16: tf.data reads the epoch without copying it, and does not keep it alive
    # afterwards (an epoch is 1.2 GB at 20M interactions), not even mid-epoch (SIGTERM).
    import gc
    import weakref

    from training.families.ncf import CHUNK_BATCHES, batched_dataset

    users = np.arange(4 * CHUNK_BATCHES * 3, dtype=np.int32)
    alive = weakref.ref(users)
    with batched_dataset((users,), 4) as data:
        batches = iter(data)
        np.testing.assert_array_equal(next(batches)[0], users[:4])
        del users
    gc.collect()
    assert alive() is None
    del batches


def test_pretraining_fuses_the_towers_at_the_share_best_on_validation() -> None:
    from ncf_test_support import single_fit_config

    from training.dataset import build_dataset
    from training.families.ncf import FUSION_WEIGHTS, KerasScorer, _fusion_weight
    from training.objectives import objective_for
    from training.synthetic import make_interactions

    dataset = build_dataset(make_interactions(), None, None, seed=0)
    objective = objective_for(single_fit_config({"model_type": "neumf"}), dataset)
    rng = np.random.default_rng(3)
    towers = []
    for tower_type in ("gmf", "mlp", "neumf"):
        tower = NCF(
            dataset.num_users, dataset.num_items, tower_type, gmf_dim=4, mlp_layers=(8, 4)
        ).build_all()
        tower.set_weights(
            [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in tower.get_weights()]
        )
        towers.append(tower)
    gmf, mlp, neumf = towers
    chosen = _fusion_weight(neumf, (gmf, mlp), objective)
    validation = {}
    for alpha in FUSION_WEIGHTS:
        neumf.load_pretrained(gmf, mlp, alpha=alpha)
        validation[alpha] = objective.validation_accuracy(KerasScorer(neumf))["hr"]
    assert chosen in FUSION_WEIGHTS
    assert validation[chosen] == max(validation.values()) >= validation[0.5]


def test_a_pretrained_neumf_counts_its_fused_towers_as_epoch_0(tmp_path) -> None:
    from ncf_test_support import single_fit_config

    from training.dataset import build_dataset
    from training.families import FitContext, family_for
    from training.objectives import objective_for
    from training.synthetic import make_interactions

    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config(
        {"model_type": "neumf", "pretrain": True, "pretrain_epochs": 1, "epochs": 2}
    )
    objective = objective_for(config, dataset)
    result = family_for("neumf").fit(config, objective, FitContext(tmp_path, emit=print))

    assert [record["epoch"] for record in result.history] == [0, 1, 2]
    assert "train_loss" not in result.history[0]  # no training pass: the fused towers
    hit_rates = [record["hr"] for record in result.history]
    assert result.best_epoch == int(np.argmax(hit_rates))
    assert result.validation["hr"] == max(hit_rates)
    assert result.model is not None
    shipped = objective.validation_accuracy(result.model.scorer)
    assert shipped["hr"] == pytest.approx(max(hit_rates))


def test_a_refit_after_epoch_0_ships_the_fused_towers_without_fine_tuning(tmp_path) -> None:
    from ncf_test_support import single_fit_config

    from training.dataset import build_dataset
    from training.families import FitContext, family_for
    from training.objectives import objective_for
    from training.synthetic import make_interactions
    from training.trainer import refit_settings

    chosen = single_fit_config({"model_type": "neumf", "pretrain": True, "pretrain_epochs": 1})
    assert refit_settings(chosen, 0).epochs == 0
    assert refit_settings(chosen, 3).epochs == 3
    assert refit_settings(single_fit_config({"model_type": "neumf"}), 0).epochs == 1

    dataset = build_dataset(make_interactions(), None, None, seed=0)
    objective = objective_for(chosen, dataset)
    context = FitContext(tmp_path, emit=print, select_best=False)
    result = family_for("neumf").fit(refit_settings(chosen, 0), objective, context)
    assert [record["epoch"] for record in result.history] == [0]
    assert result.model is not None
    shipped = objective.validation_accuracy(result.model.scorer)
    assert shipped["hr"] == pytest.approx(result.history[0]["hr"])


def test_pre_training_follows_the_family_s_learning_rate_schedule(tmp_path) -> None:
    from ncf_test_support import single_fit_config

    from training.dataset import build_dataset
    from training.families import FitContext
    from training.families.ncf import _Epochs, _pretrain
    from training.objectives import objective_for
    from training.synthetic import make_interactions

    dataset = build_dataset(make_interactions(), None, None, seed=0)
    config = single_fit_config(
        {
            "model_type": "neumf",
            "pretrain": True,
            "pretrain_epochs": 3,
            "learning_rate": 0.01,
            "learning_rate_decay": 0.5,
        }
    )
    objective = objective_for(config, dataset)
    context = FitContext(tmp_path, emit=print)
    towers = _pretrain(config, objective, _Epochs(config, objective, context), context)
    assert towers is not None
    for tower in towers:  # the third epoch ran at 0.01 * 0.5 ** 2
        assert float(tower.optimizer.learning_rate) == pytest.approx(0.0025)
