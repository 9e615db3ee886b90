"""The hybrid family: a dot-product model whose vectors add attribute embeddings to id embeddings.

For an item ``i`` with feature row ``x_i`` (its attributes encoded as in
``ncf_contract.attributes``: categorical and multi-valued values, standardised
numbers, TF-IDF of text) and a user ``u`` with feature row ``y_u``::

    item_vector[i] = known_i * item_id_embedding[i] + x_i @ item_feature_embedding
    user_vector[u] = known_u * user_id_embedding[u] + y_u @ user_feature_embedding
    logit          = user_vector[u] . item_vector[i] + item_bias[i] + output_bias

so a multi-valued attribute contributes the mean of its values' embeddings, and
a text column its TF-IDF vector projected by a learned ``[terms, d]`` matrix.
``item_bias[i]`` is built the same way (an id part plus a learned bias per
feature). ``known`` is 1 for ids with training interactions and 0 otherwise:
a cold item (in the ``items`` channel, absent from ``train``) is scored from
its attributes alone, never from an untrained id row. Without attribute
channels this is matrix factorisation with item biases.

Per-example L2 (``gmf_regularization``) on the composed vectors of each
training pair, as for GMF. The dimension is ``gmf_dim``; the epoch loop,
checkpoints, early stopping and SIGTERM handling are the NCF family's
(``training.families.ncf``).

Export: every item and user vector is precomputed (``gmf_item_embedding``,
``item_bias``, ``gmf_user_embedding``, ``output_kernel`` of ones), so serving
scores known ids exactly as it scores GMF, with no feature work per request;
``user_feature_embedding`` lets serving build a new user's vector from the
attributes of its request.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import scipy.sparse as sp
import tensorflow as tf
from keras import layers

from ncf_contract.families import HYBRID
from training.config import TrainingConfig
from training.families.base import FittedModel
from training.families.lazy_adam import gather_rows
from training.families.ncf import NcfFamily
from training.objectives import Objective, Scorer


def _initializer() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=0.01)


class _Side(layers.Layer):
    """The vectors of one side: masked id embeddings plus feature embeddings (see the module)."""

    def __init__(
        self,
        num_ids: int,
        width: int,
        known: np.ndarray,
        features: sp.csr_matrix | None,
        name: str,
    ) -> None:
        super().__init__(name=name)
        self.num_ids = num_ids
        self.width = width
        self.id_table = self.add_weight(
            shape=(num_ids, width), initializer=_initializer(), name="id_embedding"
        )
        self.known = tf.constant(known.astype(np.float32).reshape(-1, 1))
        self.features = features
        self.feature_table = None
        if features is not None:
            csr = sp.csr_matrix(features, dtype=np.float32)
            csr.sort_indices()
            self.feature_table = self.add_weight(
                shape=(csr.shape[1], width), initializer=_initializer(), name="feature_embedding"
            )
            self.indptr = tf.constant(csr.indptr.astype(np.int64))
            self.indices = tf.constant(csr.indices.astype(np.int64))
            self.values = tf.constant(csr.data.astype(np.float32))
            coo = csr.tocoo()
            self.sparse = tf.sparse.reorder(
                tf.SparseTensor(
                    np.stack([coo.row, coo.col], axis=1).astype(np.int64),
                    coo.data.astype(np.float32),
                    coo.shape,
                )
            )

    def call(self, index: Any) -> Any:
        """``[batch, width]`` vectors of the ids ``index``."""
        index = tf.cast(index, tf.int64)
        vectors = gather_rows(self.id_table, index) * tf.gather(self.known, index)
        if self.feature_table is not None:
            ranges = tf.ragged.range(
                tf.gather(self.indptr, index), tf.gather(self.indptr, index + 1)
            )
            positions = ranges.flat_values
            rows = gather_rows(self.feature_table, tf.gather(self.indices, positions))
            rows = rows * tf.gather(self.values, positions)[:, None]
            vectors += tf.math.unsorted_segment_sum(
                rows, ranges.value_rowids(), tf.shape(index, out_type=tf.int64)[0]
            )
        return vectors

    def all_vectors(self) -> np.ndarray:
        """``[num_ids, width]`` every id's vector, float32."""
        vectors = self.id_table * self.known
        if self.feature_table is not None:
            vectors += tf.sparse.sparse_dense_matmul(self.sparse, self.feature_table)
        return np.asarray(vectors, dtype=np.float32)


class HybridModel(keras.Model):
    """Scores ``[batch, 1]`` for ``(user_index, item_index)``; see the module docstring."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        regularization: float,
        output_activation: str,
        user_known: np.ndarray,
        item_known: np.ndarray,
        user_features: sp.csr_matrix | None = None,
        item_features: sp.csr_matrix | None = None,
    ) -> None:
        super().__init__(name="hybrid")
        self.num_users = num_users
        self.num_items = num_items
        self.dim = dim
        self.regularization = regularization
        self.output_activation = output_activation
        self.has_user_features = user_features is not None
        self.users = _Side(num_users, dim, user_known, user_features, "users")
        # One more column on the item side: the item's bias.
        self.items = _Side(num_items, dim + 1, item_known, item_features, "items")
        self.output_bias = self.add_weight(shape=(1,), initializer="zeros", name="output_bias")
        self.activation = keras.activations.get(output_activation)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """Scores ``[batch, 1]``."""
        user_index, item_index = inputs
        users = self.users(user_index)
        items = self.items(item_index)
        item_vectors, item_bias = items[:, : self.dim], items[:, self.dim]
        if training and self.regularization:
            squared = tf.reduce_sum(tf.square(users), -1) + tf.reduce_sum(
                tf.square(item_vectors), -1
            )
            self.add_loss(self.regularization * tf.reduce_mean(squared))
        logits = tf.reduce_sum(users * item_vectors, -1) + item_bias + self.output_bias
        return self.activation(tf.reshape(logits, [-1, 1]))

    def build_all(self) -> HybridModel:
        """Create every weight by scoring one pair; returns ``self``."""
        self((np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)))
        return self

    def export_weights(self) -> dict[str, np.ndarray]:
        """Precomputed vectors under the model directory's names (see the module docstring)."""
        items = self.items.all_vectors()
        weights = {
            "gmf_user_embedding": self.users.all_vectors(),
            "gmf_item_embedding": items[:, : self.dim],
            "item_bias": items[:, self.dim],
            "output_kernel": np.ones((self.dim, 1), np.float32),
            "output_bias": np.asarray(self.output_bias, dtype=np.float32).reshape(1),
        }
        if self.users.feature_table is not None:
            weights["user_feature_embedding"] = np.asarray(self.users.feature_table)
        return {name: np.ascontiguousarray(value, np.float32) for name, value in weights.items()}


class HybridScorer:
    """Evaluation scoring from the model's current vectors (recomputed per call: cheap)."""

    def __init__(self, model: HybridModel) -> None:
        self.model = model
        self.num_items = model.num_items
        self.sigmoid = model.output_activation == "sigmoid"

    def _parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        weights = self.model.export_weights()
        bias = weights["item_bias"] + weights["output_bias"][0]
        return weights["gmf_user_embedding"], weights["gmf_item_embedding"], bias

    def _activate(self, logits: np.ndarray) -> np.ndarray:
        if self.sigmoid:
            return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        return logits.astype(np.float32)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of ``(users[j], items[j])`` (any equal shapes), float32, same shape."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        user_vectors, item_vectors, bias = self._parts()
        flat_users, flat_items = users.reshape(-1), items.reshape(-1)
        logits = np.einsum("nd,nd->n", user_vectors[flat_users], item_vectors[flat_items])
        return self._activate(logits + bias[flat_items]).reshape(users.shape)

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]`` scores of every item for each user."""
        user_vectors, item_vectors, bias = self._parts()
        return self._activate(user_vectors[np.asarray(users)] @ item_vectors.T + bias)


class FittedHybrid(FittedModel):
    """A trained hybrid model."""

    model_type = HYBRID

    def __init__(self, model: HybridModel) -> None:
        self.keras_model = model
        self.output_activation = model.output_activation
        self._scorer = HybridScorer(model)

    @property
    def scorer(self) -> HybridScorer:
        """Scoring from precomputed vectors."""
        return self._scorer

    def model_weights(self) -> dict[str, np.ndarray]:
        """The precomputed vectors (see the module docstring)."""
        return self.keras_model.export_weights()


class HybridFamily(NcfFamily):
    """The hybrid model, fitted by the NCF family's epoch loop."""

    def build(self, config: TrainingConfig, objective: Objective) -> HybridModel:
        """A hybrid model over the dataset's attributes, every weight created."""
        dataset = objective.dataset
        item_known = dataset.item_popularity > 0
        user_known = dataset.train_seen.counts() > 0
        return HybridModel(
            num_users=dataset.num_users,
            num_items=dataset.num_items,
            dim=config.gmf_dim,
            regularization=config.gmf_regularization,
            output_activation=objective.output_activation,
            user_known=user_known,
            item_known=item_known,
            user_features=None
            if dataset.user_attributes is None
            else dataset.user_attributes.features,
            item_features=None
            if dataset.item_attributes is None
            else dataset.item_attributes.features,
        ).build_all()

    def scorer(self, model: Any) -> Scorer:
        """Scoring from the model's current vectors."""
        return HybridScorer(model)

    def fitted(self, model: Any) -> FittedModel:
        """The fitted hybrid."""
        return FittedHybrid(model)
