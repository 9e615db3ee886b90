"""The softmax loss (``loss=softmax``): its logits, value and examples, and who trains with it."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ncf_test_support import single_fit_config  # noqa: E402

from training.config import POINTWISE, SOFTMAX, TrainingConfig  # noqa: E402
from training.dataset import build_dataset  # noqa: E402
from training.errors import ConfigError  # noqa: E402
from training.families.ncf_model import NCF  # noqa: E402
from training.objectives import (  # noqa: E402
    ExplicitObjective,
    ImplicitObjective,
    SoftmaxObjective,
    objective_for,
)
from training.synthetic import make_interactions  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _random_model(model_type: str, num_items: int, candidates: int, **kwargs) -> NCF:
    model = NCF(
        7,
        num_items,
        model_type,
        gmf_dim=4,
        output_activation="linear",
        softmax_candidates=candidates,
        **kwargs,
    ).build_all()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _pair_logits(model: NCF, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    grid_users, grid_items = np.meshgrid(users, items, indexing="ij")
    scores = model((grid_users.ravel(), grid_items.ravel()))
    return keras.ops.convert_to_numpy(scores).reshape(len(users), len(items))


@pytest.mark.parametrize("model_type", ["gmf", "mlp", "neumf"])
@pytest.mark.parametrize("mlp_layers", [(8, 4, 2), (6,)])
def test_candidate_logits_are_the_pairs_logits(model_type: str, mlp_layers: tuple) -> None:
    model = _random_model(model_type, 9, 0, mlp_layers=mlp_layers)
    users, candidates = np.array([0, 3, 3, 6]), np.array([8, 0, 2, 2, 5])
    found = keras.ops.convert_to_numpy(model.candidate_logits(users, candidates))
    np.testing.assert_allclose(found, _pair_logits(model, users, candidates), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_type", ["gmf", "neumf"])
def test_over_the_whole_catalog_the_loss_is_the_full_softmax_plus_the_penalties(
    model_type: str,
) -> None:
    model = _random_model(model_type, 9, 9, mlp_layers=(8, 4), gmf_regularization=0.1)
    users, items = np.array([0, 3, 6, 6]), np.array([8, 0, 2, 5])
    weights = np.array([1.0, 0.5, 2.0, 1.0], dtype=np.float32)
    model.compile(optimizer="sgd", loss=LOSS)
    positives = model((users, items), training=True)
    penalties = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
    found = float(model.compute_loss((users, items), None, positives, weights))

    logits = _pair_logits(model, users, np.arange(9))
    log_softmax = logits[np.arange(4), items] - np.log(np.exp(logits).sum(axis=1))
    expected = float(-(weights * log_softmax).sum() / len(users)) + penalties
    assert penalties > 0
    assert found == pytest.approx(expected, rel=1e-5)


def test_a_catalog_larger_than_the_candidates_is_sampled_for_each_batch() -> None:
    # Every logit 0: the loss is log(1 + number of candidates), whatever they are.
    model = NCF(
        3, 100_000, "gmf", gmf_dim=2, output_activation="linear", softmax_candidates=50
    ).build_all()
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.compile(optimizer="sgd", loss=LOSS)
    users, items = np.array([0, 1, 2]), np.array([5, 99_999, 7])
    positives = model((users, items), training=True)
    first = float(model.compute_loss((users, items), None, positives))
    assert first == pytest.approx(np.log(51), rel=1e-6)
    assert model._candidate_seeds is not None
    drawn = keras.ops.convert_to_numpy(
        keras.random.randint((50,), 0, 100_000, seed=model._candidate_seeds)
    )
    assert drawn.min() >= 0 and drawn.max() < 100_000 and len(set(drawn)) > 40


def test_gmf_under_the_softmax_is_matrix_factorisation_with_its_output_fixed() -> None:
    model = NCF(7, 9, "gmf", gmf_dim=4, output_activation="linear", softmax_candidates=9)
    model.build_all().compile(optimizer=keras.optimizers.Adam(0.05), loss=LOSS)
    users, items = np.array([0, 1, 2, 3, 4, 5, 6, 6]), np.array([1, 2, 3, 4, 5, 6, 7, 8])
    before = keras.ops.convert_to_numpy(model.gmf_user.embeddings).copy()
    model.fit((users, items), np.zeros(8), batch_size=4, epochs=3, verbose=0)

    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.output_dense.weights)
    np.testing.assert_array_equal(kernel, np.ones((4, 1)))
    np.testing.assert_array_equal(bias, np.zeros(1))
    user_rows = keras.ops.convert_to_numpy(model.gmf_user.embeddings)
    item_rows = keras.ops.convert_to_numpy(model.gmf_item.embeddings)
    assert not np.allclose(user_rows, before)  # the embeddings did learn
    np.testing.assert_allclose(
        _pair_logits(model, np.arange(7), np.arange(9)),
        user_rows @ item_rows.T,
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("model_type", "candidates", "activation"),
    [("gmf", 0, "sigmoid"), ("neumf", 9, "linear"), ("mlp", 9, "linear")],
)
def test_other_ncf_models_learn_their_output_layer(
    model_type: str, candidates: int, activation: str
) -> None:
    model = NCF(
        7, 9, model_type, output_activation=activation, softmax_candidates=candidates
    ).build_all()
    trainable = {id(weight) for weight in model.trainable_weights}
    assert all(id(weight) in trainable for weight in model.output_dense.weights)


def test_the_softmax_trains_logits_only() -> None:
    with pytest.raises(ValueError, match="linear"):
        NCF(3, 4, "gmf", softmax_candidates=10)


def test_a_model_with_the_softmax_loss_round_trips_its_config() -> None:
    model = _random_model("neumf", 9, 5, mlp_layers=(6, 2))
    clone = NCF.from_config(model.get_config()).build_all()
    assert clone.softmax_candidates == 5
    assert clone.get_config() == model.get_config()


@pytest.fixture(scope="module")
def dataset():
    return build_dataset(make_interactions(), None, None, seed=0)


@pytest.mark.parametrize(
    ("hyperparameters", "expected"),
    [
        ({"model_type": "gmf"}, ImplicitObjective),  # loss=auto without a search: pointwise
        ({"model_type": "gmf", "loss": "softmax"}, SoftmaxObjective),
        ({"model_type": "auto", "loss": "softmax"}, SoftmaxObjective),  # fits gmf
        ({"model_type": "neumf"}, ImplicitObjective),
        ({"model_type": "mlp"}, ImplicitObjective),
        ({"model_type": "gmf", "loss": "pointwise"}, ImplicitObjective),
        ({"model_type": "neumf", "loss": "softmax"}, SoftmaxObjective),
        ({"model_type": "ials"}, ImplicitObjective),
        ({"model_type": "hybrid"}, ImplicitObjective),
        ({"model_type": "gmf", "feedback": "explicit"}, ExplicitObjective),
    ],
)
def test_each_family_trains_with_the_loss_it_is_given_or_its_best(
    dataset, hyperparameters: dict, expected: type
) -> None:
    objective = objective_for(single_fit_config(hyperparameters), dataset)
    assert type(objective) is expected
    softmax = expected is SoftmaxObjective
    assert objective.output_activation == ("linear" if softmax else objective.output_activation)
    assert objective.softmax_candidates == (4096 if softmax else 0)


def test_without_a_search_auto_means_pointwise_and_softmax_means_the_ncf_families() -> None:
    families = ("gmf", "mlp", "neumf", "hybrid", "ease")
    auto = TrainingConfig.from_hyperparameters({})
    assert [auto.loss_for(family) for family in families] == [POINTWISE] * 5
    softmax = TrainingConfig.from_hyperparameters({"loss": "softmax"})
    assert [softmax.loss_for(family) for family in families] == [SOFTMAX] * 3 + [POINTWISE] * 2


@pytest.mark.parametrize(
    "hyperparameters",
    [
        {"loss": "softmax", "feedback": "explicit"},
        {"loss": "softmax", "model_type": "hybrid"},
        {"loss": "softmax", "model_type": "ease"},
        {"loss": "listwise"},
    ],
)
def test_a_softmax_it_cannot_train_is_refused_naming_the_fix(hyperparameters: dict) -> None:
    with pytest.raises(ConfigError, match="loss"):
        TrainingConfig.from_hyperparameters(hyperparameters)


def test_the_softmax_epoch_holds_each_positive_once(dataset) -> None:
    config = single_fit_config({"model_type": "gmf", "loss": "softmax"})
    examples = objective_for(config, dataset).epoch_examples(np.random.default_rng(0))
    train = dataset.train
    assert len(examples.users) == len(train)
    assert not examples.targets.any()
    found = sorted(zip(examples.users.tolist(), examples.items.tolist(), strict=True))
    assert found == sorted(zip(train.user_index.tolist(), train.item_index.tolist(), strict=True))
    assert not np.array_equal(examples.users, train.user_index)  # shuffled


def test_a_gmf_trained_with_the_softmax_ranks_above_popularity(dataset, tmp_path) -> None:
    from training.families import FitContext, family_for

    config = single_fit_config({"model_type": "gmf", "loss": "softmax", "epochs": 4, "gmf_dim": 16})
    objective = objective_for(config, dataset)
    result = family_for("gmf").fit(config, objective, FitContext(tmp_path, emit=lambda _: None))
    assert result.model is not None
    assert result.model.output_activation == "linear"
    popularity = objective.validation_accuracy(_Popularity(dataset.item_popularity))
    # A random ranking scores about 0.1 here (10 of 100 candidates), popularity 0.39.
    assert result.validation["hr"] > popularity["hr"]


@pytest.mark.parametrize(
    ("loss", "expected"), [("auto", (0, "sigmoid")), ("softmax", (4096, "linear"))]
)
def test_neumf_pre_trains_its_towers_with_the_loss_it_is_given(
    dataset, tmp_path, loss: str, expected: tuple
) -> None:
    from training.families import FitContext
    from training.families.ncf import _Epochs, _pretrain

    config = single_fit_config(
        {"model_type": "neumf", "pretrain": True, "pretrain_epochs": 1, "loss": loss}
    )
    objective = objective_for(config, dataset)
    context = FitContext(tmp_path, emit=lambda _: None)
    towers = _pretrain(config, objective, _Epochs(config, objective, context), context)
    assert towers is not None
    for tower in towers:
        assert (tower.softmax_candidates, tower.output_activation) == expected


class _Popularity:
    def __init__(self, popularity: np.ndarray) -> None:
        self.popularity = popularity.astype(np.float32)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.popularity[items]

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity, (len(users), 1))


def test_a_softmax_step_holds_as_many_positives_as_a_pointwise_step(dataset) -> None:
    def objective(**hyperparameters):
        return objective_for(single_fit_config({"batch_size": 1000, **hyperparameters}), dataset)

    assert objective(model_type="neumf", num_negatives=4).batch_size == 1000
    assert objective(model_type="gmf", num_negatives=4).batch_size == 1000
    assert objective(model_type="gmf", loss="softmax", num_negatives=4).batch_size == 200
    assert objective(model_type="gmf", loss="softmax", num_negatives=1).batch_size == 500
    assert objective(model_type="gmf", loss="softmax", batch_size=3).batch_size == 1
