"""GMF, MLP and NeuMF (He et al., "Neural Collaborative Filtering", WWW 2017) in Keras 3.

One model class covers the three: ``model_type`` picks the towers. The layers
map one to one onto the arrays of ``ncf_contract.model_dir`` (see ``export_weights``),
and the forward pass is the formula documented there::

    gmf   = gmf_user[u] * gmf_item[i]
    x_L   = relu(... relu(concat(mlp_user[u], mlp_item[i]) @ W_0 + b_0) ...)
    h     = gmf | x_L | concat(gmf, x_L)
    score = sigmoid(h @ w + b)        (implicit feedback; linear for explicit)

Dropout (if any) acts on the MLP hidden layers during training only.

Regularisation is per example, as in matrix factorisation trained by SGD: each
training batch adds ``gmf_regularization * mean(|gmf_user[u]|² + |gmf_item[i]|²)``
(and the same for the MLP embeddings with ``mlp_regularization``), so only the
rows a batch looks up are penalised, in proportion to how often they occur.
Keras' ``embeddings_regularizer`` would instead penalise the whole matrix on
every batch, which shrinks rare users and items hardest and makes the scale
depend on the catalogue size. ``mlp_regularization`` also puts L2 on the MLP
kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from training.families.lazy_adam import RowEmbedding


@keras.saving.register_keras_serializable(package="ncf")
class NCF(keras.Model):
    """A GMF, MLP or NeuMF scorer of (user, item) index pairs.

    Call with ``(user_index, item_index)``, each ``[batch]`` integers; returns
    ``[batch, 1]`` scores.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        model_type: str = "neumf",
        gmf_dim: int | None = None,
        mlp_layers: Sequence[int] | None = None,
        gmf_regularization: float | None = None,
        mlp_regularization: float | None = None,
        dropout: float | None = None,
        output_activation: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the embeddings and layers.

        Raises:
            ValueError: ``model_type`` or ``output_activation`` is unknown, or
                ``mlp_layers`` is empty for a model with an MLP tower.
        """
        super().__init__(**kwargs)
        if model_type not in ("gmf", "mlp", "neumf"):
            raise ValueError(f"model_type must be gmf, mlp or neumf, got {model_type!r}")
        self.num_users, self.num_items, self.model_type = num_users, num_items, model_type
        self.gmf_dim = 32 if gmf_dim is None else gmf_dim
        self.mlp_layers = tuple(mlp_layers or (64, 32, 16))
        self.gmf_regularization = gmf_regularization or 0.0
        self.mlp_regularization = mlp_regularization or 0.0
        self.dropout = dropout or 0.0
        self.output_activation = output_activation or "sigmoid"
        if self.output_activation not in ("sigmoid", "linear"):
            raise ValueError(
                f"output_activation must be sigmoid or linear, got {output_activation!r}"
            )
        self.use_gmf = model_type in ("gmf", "neumf")
        self.use_mlp = model_type in ("mlp", "neumf")

        def embedding(rows: int, dim: int, name: str) -> layers.Embedding:
            # Only the looked-up rows are read (see ``lazy_adam.gather_rows``).
            return RowEmbedding(
                rows,
                dim,
                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01),
                name=name,
            )

        if self.use_gmf:
            self.gmf_user = embedding(num_users, self.gmf_dim, "gmf_user")
            self.gmf_item = embedding(num_items, self.gmf_dim, "gmf_item")
        if self.use_mlp:
            half = self.mlp_layers[0] // 2
            self.mlp_user = embedding(num_users, half, "mlp_user")
            self.mlp_item = embedding(num_items, half, "mlp_item")
            self.mlp_dense = [
                layers.Dense(
                    units,
                    activation="relu",
                    kernel_regularizer=(
                        keras.regularizers.L2(self.mlp_regularization)
                        if self.mlp_regularization
                        else None
                    ),
                    name=f"mlp_dense_{index}",
                )
                for index, units in enumerate(self.mlp_layers[1:])
            ]
            self.mlp_dropout = layers.Dropout(self.dropout) if self.dropout else None
        self.output_dense = layers.Dense(
            1,
            activation=self.output_activation,
            kernel_initializer="lecun_uniform",
            name="prediction",
        )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """Scores ``[batch, 1]`` for ``inputs = (user_index [batch], item_index [batch])``."""
        user_index, item_index = inputs
        parts = []
        if self.use_gmf:
            gmf_user, gmf_item = self.gmf_user(user_index), self.gmf_item(item_index)
            if training:
                self._penalise_rows(self.gmf_regularization, gmf_user, gmf_item)
            parts.append(gmf_user * gmf_item)
        if self.use_mlp:
            mlp_user, mlp_item = self.mlp_user(user_index), self.mlp_item(item_index)
            if training:
                self._penalise_rows(self.mlp_regularization, mlp_user, mlp_item)
            hidden = ops.concatenate([mlp_user, mlp_item], axis=-1)
            for dense in self.mlp_dense:
                hidden = dense(hidden)
                if self.mlp_dropout is not None:
                    hidden = self.mlp_dropout(hidden, training=training)
            parts.append(hidden)
        features = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        return self.output_dense(features)

    def _penalise_rows(self, strength: float, *rows: Any) -> None:
        """Add ``strength * mean over the batch of the rows' squared norms`` to the loss."""
        if strength:
            squared = sum(ops.sum(ops.square(row), axis=-1) for row in rows)
            self.add_loss(strength * ops.mean(squared))

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, so the model saves and loads."""
        return {
            **super().get_config(),
            "num_users": self.num_users,
            "num_items": self.num_items,
            "model_type": self.model_type,
            "gmf_dim": self.gmf_dim,
            "mlp_layers": list(self.mlp_layers),
            "gmf_regularization": self.gmf_regularization,
            "mlp_regularization": self.mlp_regularization,
            "dropout": self.dropout,
            "output_activation": self.output_activation,
        }

    def build_all(self) -> NCF:
        """Create every weight by scoring one pair; returns ``self``."""
        self((np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)))
        return self

    @property
    def num_mlp_layers(self) -> int:
        """Hidden ``Dense`` layers of the MLP tower (``mlp_kernel_<l>`` arrays)."""
        return len(self.mlp_dense) if self.use_mlp else 0

    def export_weights(self) -> dict[str, np.ndarray]:
        """The learned arrays under the names of ``ncf_contract.model_dir``."""
        weights: dict[str, np.ndarray] = {}
        if self.use_gmf:
            weights["gmf_user_embedding"] = ops.convert_to_numpy(self.gmf_user.embeddings)
            weights["gmf_item_embedding"] = ops.convert_to_numpy(self.gmf_item.embeddings)
        if self.use_mlp:
            weights["mlp_user_embedding"] = ops.convert_to_numpy(self.mlp_user.embeddings)
            weights["mlp_item_embedding"] = ops.convert_to_numpy(self.mlp_item.embeddings)
            for index, dense in enumerate(self.mlp_dense):
                weights[f"mlp_kernel_{index}"] = ops.convert_to_numpy(dense.kernel)
                weights[f"mlp_bias_{index}"] = ops.convert_to_numpy(dense.bias)
        weights["output_kernel"] = ops.convert_to_numpy(self.output_dense.kernel)
        weights["output_bias"] = ops.convert_to_numpy(self.output_dense.bias)
        return {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}

    def load_pretrained(self, gmf: NCF, mlp: NCF, alpha: float = 0.5) -> None:
        """Initialise a NeuMF from trained GMF and MLP models (the paper's pre-training).

        The towers are copied; the output layer is ``[alpha * w_gmf; (1 - alpha) * w_mlp]``
        with bias ``alpha * b_gmf + (1 - alpha) * b_mlp``.

        Raises:
            ValueError: This model is not NeuMF.
        """
        if self.model_type != "neumf":
            raise ValueError(f"pre-trained weights load into a neumf model, not {self.model_type}")
        self.gmf_user.set_weights(gmf.gmf_user.get_weights())
        self.gmf_item.set_weights(gmf.gmf_item.get_weights())
        self.mlp_user.set_weights(mlp.mlp_user.get_weights())
        self.mlp_item.set_weights(mlp.mlp_item.get_weights())
        for mine, theirs in zip(self.mlp_dense, mlp.mlp_dense, strict=True):
            mine.set_weights(theirs.get_weights())
        gmf_kernel, gmf_bias = gmf.output_dense.get_weights()
        mlp_kernel, mlp_bias = mlp.output_dense.get_weights()
        self.output_dense.set_weights(
            [
                np.concatenate([alpha * gmf_kernel, (1 - alpha) * mlp_kernel], axis=0),
                alpha * gmf_bias + (1 - alpha) * mlp_bias,
            ]
        )
