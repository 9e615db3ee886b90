"""Sparse updates: LazyAdam moves only the embedding rows a batch looks up, with their moments."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.config import TrainingConfig
from training.dataset import build_dataset
from training.families.lazy_adam import LazyAdam
from training.families.ncf import KerasScorer, compile_model
from training.families.ncf_model import NCF
from training.objectives import objective_for
from training.synthetic import make_interactions

USERS = np.array([1, 2, 2, 3] * 4, dtype=np.int32)
ITEMS = np.array([5, 6, 7, 5] * 4, dtype=np.int32)
LABELS = np.array([1, 0, 1, 0] * 4, dtype=np.float32).reshape(-1, 1)


def fitted(optimizer: keras.optimizers.Optimizer, steps: int, seed: int = 3) -> NCF:
    """A small NeuMF after ``steps`` full-batch steps on the fixed batch above."""
    keras.utils.set_random_seed(seed)
    model = NCF(20, 12, model_type="neumf", gmf_dim=4, mlp_layers=(8, 4), gmf_regularization=0.01)
    model.build_all()
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    model.optimizer.build(model.trainable_variables)
    model.fit((USERS, ITEMS), LABELS, batch_size=len(USERS), epochs=steps, verbose=0)
    return model


def changed_rows(after: np.ndarray, before: np.ndarray) -> set[int]:
    return set(np.flatnonzero(np.any(after != before, axis=1)).tolist())


def test_only_looked_up_rows_and_their_moments_change() -> None:
    keras.utils.set_random_seed(3)
    untouched = NCF(20, 12, model_type="neumf", gmf_dim=4, mlp_layers=(8, 4)).build_all()
    initial = [keras.ops.convert_to_numpy(v) for v in untouched.trainable_variables]

    model = fitted(LazyAdam(learning_rate=0.01), steps=3)
    for variable, before in zip(model.trainable_variables, initial, strict=True):
        after = keras.ops.convert_to_numpy(variable)
        if "user/embeddings" in variable.path:
            assert changed_rows(after, before) == {1, 2, 3}, variable.path
        elif "item/embeddings" in variable.path:
            assert changed_rows(after, before) == {5, 6, 7}, variable.path
        else:  # dense parameters: the ordinary Adam update moves them
            assert not np.array_equal(after, before), variable.path
    for variable in model.optimizer.variables:
        path, slot = variable.path, keras.ops.convert_to_numpy(variable)
        if "user_embeddings" in path:
            assert set(np.flatnonzero(np.any(slot != 0, axis=1)).tolist()) == {1, 2, 3}, path
        elif "item_embeddings" in path:
            assert set(np.flatnonzero(np.any(slot != 0, axis=1)).tolist()) == {5, 6, 7}, path


def test_matches_adam_on_the_first_step_and_differs_only_by_laziness_after() -> None:
    # Step 1: an untouched row has zero moments under either optimizer, so Adam leaves it
    # alone too and the two agree everywhere.
    lazy, dense = fitted(LazyAdam(learning_rate=0.01), 1), fitted(keras.optimizers.Adam(0.01), 1)
    for mine, theirs in zip(lazy.get_weights(), dense.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    # Later steps on the same rows: touched rows decay their moments the same way, so with
    # the same batch every step the two still agree (laziness only shows on untouched rows).
    lazy, dense = fitted(LazyAdam(learning_rate=0.01), 4), fitted(keras.optimizers.Adam(0.01), 4)
    for mine, theirs in zip(lazy.get_weights(), dense.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)


def test_rows_left_out_of_a_batch_keep_their_values_unlike_adam() -> None:
    def two_batches(optimizer: keras.optimizers.Optimizer) -> tuple[np.ndarray, np.ndarray]:
        model = fitted(optimizer, 1)  # rows 1, 2, 3 get momentum
        before = keras.ops.convert_to_numpy(model.gmf_user.embeddings)
        other = np.full(len(USERS), 9, dtype=np.int32)  # a batch of user 9 only
        model.fit((other, ITEMS), LABELS, batch_size=len(USERS), epochs=1, verbose=0)
        return before, keras.ops.convert_to_numpy(model.gmf_user.embeddings)

    before, after = two_batches(LazyAdam(learning_rate=0.01))
    assert changed_rows(after, before) == {9}
    before, after = two_batches(keras.optimizers.Adam(0.01))
    assert changed_rows(after, before) == {1, 2, 3, 9}  # momentum keeps moving Adam's rows


def test_sparse_updates_hyperparameter_picks_the_optimizer() -> None:
    dataset = build_dataset(
        make_interactions(num_users=30, num_items=20, interactions_per_user=5), None, None
    )

    def optimizer_of(config: TrainingConfig, name: str | None = None) -> keras.optimizers.Optimizer:
        objective = objective_for(config, dataset)
        model = NCF(dataset.num_users, dataset.num_items, model_type="gmf", gmf_dim=4).build_all()
        compile_model(model, config, objective, optimizer=name)
        return model.optimizer

    assert type(optimizer_of(TrainingConfig())) is LazyAdam  # the default
    assert type(optimizer_of(TrainingConfig(sparse_updates=False))) is keras.optimizers.Adam
    # SGD applies sparse gradients row-wise in Keras already: it is kept as it is.
    assert type(optimizer_of(TrainingConfig(optimizer="sgd"))) is keras.optimizers.SGD
    assert TrainingConfig.from_hyperparameters({"sparse_updates": "false"}).sparse_updates is False


def test_amsgrad_is_refused() -> None:
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)


def test_gmf_scores_every_item_by_one_matrix_product_equal_to_the_pairwise_scores() -> None:
    keras.utils.set_random_seed(1)
    model = NCF(15, 11, model_type="gmf", gmf_dim=4).build_all()
    scorer = KerasScorer(model)
    assert scorer._all_items is not None  # the matrix-product path is the one under test
    users = np.array([0, 3, 14])
    grid = scorer.score_pairs(np.repeat(users, 11), np.tile(np.arange(11), 3)).reshape(3, 11)
    np.testing.assert_allclose(scorer.score_all_items(users), grid, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("model_type", ["gmf", "neumf"])
def test_a_training_step_reads_only_the_looked_up_rows_of_each_embedding_table(
    model_type: str,
) -> None:
    # Issue 16: once LazyAdam scatters into a table, TensorFlow copies the whole table on
    # every whole-table read (copy-on-read mode); Keras' Embedding read it twice per step,
    # which cost more than the rest of an ML-20M-shaped step. The step's graph may touch
    # the tables by sparse reads (ResourceGather) and scatters only.
    import tensorflow as tf

    model = NCF(20, 12, model_type=model_type, gmf_dim=4, mlp_layers=(8, 4))
    model.build_all()
    model.compile(optimizer=LazyAdam(learning_rate=0.01), loss="binary_crossentropy")
    model.optimizer.build(model.trainable_variables)
    ids = tf.TensorSpec([None], tf.int32)
    step = tf.function(model.train_step).get_concrete_function(
        ((ids, ids), tf.TensorSpec([None, 1], tf.float32))
    )
    tables = [v for v in model.trainable_variables if "embedding" in v.path]
    assert len(tables) == (2 if model_type == "gmf" else 4)
    handles = {id(v.value.handle) for v in tables}
    inside = {
        internal.name for external, internal in step.graph.captures if id(external) in handles
    }
    assert len(inside) == len(tables)
    uses = {
        op.type
        for op in step.graph.get_operations()
        for tensor in op.inputs
        if tensor.name in inside
    }
    assert uses == {"ResourceGather", "ResourceScatterSub"}


def test_sparse_reads_train_exactly_as_keras_embedding_lookups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import training.families.ncf_model as ncf_model

    sparse_reads = fitted(LazyAdam(learning_rate=0.05), steps=5)
    monkeypatch.setattr(ncf_model, "RowEmbedding", keras.layers.Embedding)
    whole_table_reads = fitted(LazyAdam(learning_rate=0.05), steps=5)
    assert type(whole_table_reads.gmf_user) is keras.layers.Embedding
    for mine, theirs in zip(
        sparse_reads.get_weights(), whole_table_reads.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)
