"""Time: recency weights in the loss (recency_half_life), trending counts (trending_window)."""

from __future__ import annotations

import numpy as np
import pytest

from training import sampling
from training.config import TrainingConfig
from training.dataset import Interactions, build_dataset
from training.errors import DataError
from training.objectives import objective_for
from training.recency import SECONDS_PER_DAY, recency_weights, trending_counts
from training.synthetic import make_interactions

DAY = int(SECONDS_PER_DAY)


def interactions(days_ago: list[float], items: list[int] | None = None) -> Interactions:
    stamps = (1_700_000_000 - np.array(days_ago) * DAY).astype(np.int64)
    count = len(days_ago)
    return Interactions(
        np.zeros(count, np.int32),
        np.array(items if items is not None else range(count), np.int32),
        None,
        stamps,
    )


def test_weights_halve_every_half_life() -> None:
    weights = recency_weights(interactions([0, 10, 20, 5]), half_life_days=10)
    np.testing.assert_allclose(weights, [1, 0.5, 0.25, 2**-0.5], rtol=1e-6)


def test_trending_counts_the_last_window() -> None:
    train = interactions([0, 1, 2, 10, 30], items=[0, 1, 1, 2, 0])
    np.testing.assert_array_equal(trending_counts(train, 4, window_days=2), [1, 2, 0, 0])
    np.testing.assert_array_equal(trending_counts(train, 4, window_days=10), [1, 2, 1, 0])


def test_time_needs_timestamps() -> None:
    train = Interactions(np.zeros(2, np.int32), np.arange(2, dtype=np.int32))
    with pytest.raises(DataError, match="recency_half_life needs timestamps"):
        recency_weights(train, 5)
    with pytest.raises(DataError, match="trending_window needs timestamps"):
        trending_counts(train, 2, 5)


def test_softmax_examples_carry_their_positives_recency_weights() -> None:
    dataset, config = dataset_and_config(recency_half_life=400.0, loss="softmax")
    expected = recency_weights(dataset.train, 400.0)
    users, items, _, weights = objective_for(config, dataset).epoch_examples(
        np.random.default_rng(0)
    )
    weight_of = {
        (u, i): w
        for u, i, w in zip(
            dataset.train.user_index, dataset.train.item_index, expected, strict=True
        )
    }
    assert weights is not None and len(weights) == len(dataset.train)
    np.testing.assert_allclose(
        weights, [weight_of[(u, i)] for u, i in zip(users, items, strict=True)]
    )


def dataset_and_config(**hyperparameters: object):
    frame = make_interactions(num_users=40, num_items=30, interactions_per_user=6)
    config = TrainingConfig.from_hyperparameters({"num_negatives": 3, **hyperparameters})
    return build_dataset(frame, None, None, seed=0), config


def test_examples_carry_the_recency_weights() -> None:
    dataset, config = dataset_and_config(recency_half_life=400.0, loss="pointwise")
    objective = objective_for(config, dataset)
    expected = recency_weights(dataset.train, 400.0)
    assert objective.interaction_weights is not None
    users, items, targets, weights = objective.epoch_examples(np.random.default_rng(0))
    assert weights is not None and len(weights) == len(users) == 4 * len(dataset.train)
    # A positive weighs what its interaction does.
    weight_of = {
        (u, i): w
        for u, i, w in zip(
            dataset.train.user_index, dataset.train.item_index, expected, strict=True
        )
    }
    positive = targets == 1
    found = [weight_of[(u, i)] for u, i in zip(users[positive], items[positive], strict=True)]
    np.testing.assert_allclose(weights[positive], found)
    # Each user's negatives carry their positives' weights, num_negatives times over.
    for user in np.unique(users)[:10]:
        negative_sum = weights[(users == user) & ~positive].sum()
        positive_sum = weights[(users == user) & positive].sum()
        np.testing.assert_allclose(negative_sum, 3 * positive_sum, rtol=1e-5)
    assert 0 < weights.min() < 1 and weights.max() == 1


def test_without_half_life_the_examples_are_unchanged() -> None:
    dataset, config = dataset_and_config(loss="pointwise")
    examples = objective_for(config, dataset).epoch_examples(np.random.default_rng(5))
    assert examples.weights is None
    reference = sampling.training_examples(
        dataset.train, dataset.train_seen, dataset.num_items, 3, np.random.default_rng(5)
    )
    assert reference[3] is None
    for mine, theirs in zip(examples[:3], reference[:3], strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_keras_loss_is_scaled_by_the_weights(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    from training.families.ncf import fit_one_epoch
    from training.families.ncf_model import NCF
    from training.objectives import Examples
    from training.signals import StopFlag

    dataset, config = dataset_and_config()
    examples = objective_for(config, dataset).epoch_examples(np.random.default_rng(0))
    losses = []
    for weights in (None, np.full(len(examples.users), 0.5, np.float32)):
        model = NCF(dataset.num_users, dataset.num_items, "gmf", gmf_dim=4, gmf_regularization=0.0)
        model.build_all()
        keras.utils.set_random_seed(0)
        model.set_weights([np.full(w.shape, 0.1, np.float32) for w in model.get_weights()])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy")
        losses.append(fit_one_epoch(model, Examples(*examples[:3], weights), 10_000, StopFlag()))
    np.testing.assert_allclose(losses[1], 0.5 * losses[0], rtol=1e-4)
