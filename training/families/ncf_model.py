"""GMF, MLP and NeuMF (He et al., "Neural Collaborative Filtering", WWW 2017) in Keras 3.

One model class covers the three: ``model_type`` picks the towers. The layers
map one to one onto the arrays of ``ncf_contract.model_dir`` (see ``export_weights``),
and the forward pass is the formula documented there::

    gmf   = gmf_user[u] * gmf_item[i]
    x_L   = relu(... relu(concat(mlp_user[u], mlp_item[i]) @ W_0 + b_0) ...)
    h     = gmf | x_L | concat(gmf, x_L)
    score = sigmoid(h @ w + b)        (implicit feedback; linear for explicit)

Dropout (if any) acts on the MLP hidden layers during training only.

Two training losses (``TrainingConfig.loss``). The pointwise one is the paper's:
Keras' compiled binary cross-entropy on positives and sampled negatives. The softmax
one (``softmax_candidates > 0``, linear output) is computed here, in
``compute_loss``: each positive's logit competes in a softmax with the logits of the
same user against a set of candidate items::

    candidates = every item           if num_items <= softmax_candidates
                 softmax_candidates items drawn uniformly for the batch, otherwise
    loss       = -log softmax([logit(u, i), logit(u, c) for c in candidates if c != i])[0]

The whole catalog is the exact softmax of the sampled-softmax literature; the uniform
sample is its unbiased-logit approximation (uniform draws need no log-probability
correction), shared by the batch so GMF scores it as one ``[batch, candidates]``
product. The MLP tower's first layer is split into its user and item halves, so a
candidate costs it the remaining layers only.

GMF trained with the softmax keeps its output weights fixed at one (and its bias at
zero, which a softmax ignores): its score is the plain dot product of matrix
factorisation, the paper's GMF with ``h = 1``. Learning ``h`` as well cost 0.1-1.0
points of validation HR@10 under the softmax on two MovieLens samples, from a
lecun-uniform start or from ones; under the pointwise loss the learned ``h`` is the
better one by 1.3-2.6 points (BENCHMARKS.md, "GMF's output weights under the
softmax").
NeuMF and MLP learn their output layer under either loss: it weighs their towers.

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
        softmax_candidates: int = 0,
        **kwargs: Any,
    ) -> None:
        """Build the embeddings and layers.

        Raises:
            ValueError: ``model_type`` or ``output_activation`` is unknown,
                ``mlp_layers`` is empty for a model with an MLP tower, or a softmax
                loss (``softmax_candidates > 0``) is asked of a sigmoid output.
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
        self.softmax_candidates = softmax_candidates
        if softmax_candidates and self.output_activation != "linear":
            raise ValueError("the softmax loss trains logits: output_activation must be linear")
        #: Draws the shared candidates when the catalog is larger than ``softmax_candidates``.
        self._candidate_seeds = (
            keras.random.SeedGenerator(0) if 0 < softmax_candidates < num_items else None
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
        #: GMF under the softmax is matrix factorisation: ``score = gmf_user · gmf_item``.
        self.fixed_output = model_type == "gmf" and bool(softmax_candidates)
        self.output_dense = layers.Dense(
            1,
            activation=self.output_activation,
            kernel_initializer="ones" if self.fixed_output else "lecun_uniform",
            trainable=not self.fixed_output,
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
            if self.mlp_dense:
                hidden = self._mlp_after_first_layer(self.mlp_dense[0](hidden), training)
            parts.append(hidden)
        features = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        return self.output_dense(features)

    def candidate_logits(self, user_index: Any, candidates: Any, training: bool = False) -> Any:
        """``[batch, candidates]`` logits of each user against every candidate item.

        The same numbers as ``call`` on each pair before the output activation, computed
        without forming the ``batch x candidates`` pairs for the GMF tower (one product)
        and with the MLP's first layer applied to users and items separately.
        """
        kernel, bias = self.output_dense.kernel, self.output_dense.bias
        logits = bias[0]
        offset = 0
        if self.use_gmf:
            weighted_user = self.gmf_user(user_index) * kernel[: self.gmf_dim, 0]
            logits = logits + ops.matmul(weighted_user, ops.transpose(self.gmf_item(candidates)))
            offset = self.gmf_dim
        if self.use_mlp:
            user, item = self.mlp_user(user_index), self.mlp_item(candidates)
            if self.mlp_dense:
                first, half = self.mlp_dense[0], ops.shape(user)[-1]
                first_layer = ops.relu(
                    ops.expand_dims(ops.matmul(user, first.kernel[:half]), 1)
                    + ops.expand_dims(ops.matmul(item, first.kernel[half:]), 0)
                    + first.bias
                )
                hidden = self._mlp_after_first_layer(first_layer, training)
                logits = logits + ops.matmul(hidden, kernel[offset:, 0])
            else:  # no hidden layer: the output reads the concatenated embeddings
                half = ops.shape(user)[-1]
                logits = (
                    logits
                    + ops.expand_dims(ops.matmul(user, kernel[offset : offset + half, 0]), 1)
                    + ops.expand_dims(ops.matmul(item, kernel[offset + half :, 0]), 0)
                )
        return logits

    def _mlp_after_first_layer(self, hidden: Any, training: bool | None) -> Any:
        """The MLP tower from its first hidden layer's output: dropout, then the other layers."""
        for index, dense in enumerate(self.mlp_dense):
            if index:
                hidden = dense(hidden)
            if self.mlp_dropout is not None:
                hidden = self.mlp_dropout(hidden, training=training)
        return hidden

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """Keras' loss; with ``softmax_candidates``, the softmax of the module docstring.

        The compiled loss (sparse categorical cross-entropy from logits) then reads the
        ``[batch, 1 + candidates]`` logits with the positive in column 0, so Keras keeps
        doing the sample weights, the reduction, the scaling under a distribution
        strategy and the regularisation terms.
        """
        if not self.softmax_candidates:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        user_index, item_index = x
        item_index = ops.cast(item_index, "int32")
        if self._candidate_seeds is None:
            candidates = ops.arange(self.num_items, dtype="int32")
        else:
            candidates = keras.random.randint(
                (self.softmax_candidates,), 0, self.num_items, seed=self._candidate_seeds
            )
        others = self.candidate_logits(user_index, candidates, training=training)
        # The positive itself among the candidates is not a negative.
        is_positive = ops.equal(ops.expand_dims(item_index, 1), ops.expand_dims(candidates, 0))
        others = ops.where(is_positive, ops.full_like(others, -1e9), others)
        logits = ops.concatenate([ops.reshape(y_pred, (-1, 1)), others], axis=1)
        positive_column = ops.zeros_like(item_index)
        return super().compute_loss(x, positive_column, logits, sample_weight, training)

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
            "softmax_candidates": self.softmax_candidates,
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
