"""Lazy Adam: embedding rows, and their moments, change only when a batch looks them up.

Keras 3's ``Adam`` turns the sparse gradient of an embedding lookup (a
``tf.IndexedSlices``: the rows the batch touched) into arithmetic on the whole
table: every step decays both moment slots of every row and moves every row.
With 138,000 users x 64 dimensions that is about 9M parameters and 18M moment
values per step for a batch of 2,048 examples, so an epoch costs in proportion
to the catalogue rather than to the data (issue 16).

``LazyAdam`` is Keras' ``Adam`` with one change: a sparse gradient updates only
the rows it names. Those rows' first and second moments are decayed and updated
and the rows moved with the usual bias-corrected Adam step (the global step
count, as in TensorFlow Addons' ``LazyAdam`` and PyTorch's ``SparseAdam``),
exactly as Keras' ``Adam`` moves them; rows the batch does not touch keep their
values *and* their moments (Adam would keep moving them by their momentum). Dense
gradients (the MLP kernels, the output layer) take Adam's own update unchanged.
The optimizer's variables are Adam's (``iterations``, ``learning_rate``, one
``momentum`` and one ``velocity`` per trainable variable), so a checkpoint of
``training.state`` stores and restores it like any Keras optimizer.

Why our own: TensorFlow Addons' ``LazyAdam`` is Keras 2 only and Addons is
unmaintained (end of life since May 2024); Keras 3 has no lazy Adam, and its
sparse-aware optimizers (SGD, Adagrad) apply sparse gradients row-wise already
but Adam and RMSprop do not. The update is TensorFlow-only (``tf.IndexedSlices``
and resource-variable scatters), as the trainer is.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ncf")
class LazyAdam(keras.optimizers.Adam):
    """Adam whose sparse (embedding) updates touch only the looked-up rows and their moments.

    Takes ``keras.optimizers.Adam``'s arguments except ``amsgrad`` (not supported).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """See ``keras.optimizers.Adam``.

        Raises:
            ValueError: ``amsgrad=True`` was passed.
        """
        if kwargs.get("amsgrad"):
            raise ValueError("LazyAdam does not support amsgrad=True")
        super().__init__(*args, **kwargs)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Adam's step; for a ``tf.IndexedSlices`` gradient, on the named rows only."""
        if not isinstance(gradient, tf.IndexedSlices):
            super().update_step(gradient, variable, learning_rate)
            return
        dtype = variable.dtype
        # A row looked up by several examples: Keras' Adam sums the examples' gradients for
        # the first moment but squares each before summing for the second (``ops.square``
        # acts on the slices' values); both are kept, so touched rows move exactly as Adam
        # moves them and the learning rates tuned with Adam still hold.
        rows, positions = tf.unique(gradient.indices)
        values = tf.cast(gradient.values, dtype)
        row_gradient = tf.math.unsorted_segment_sum(values, positions, tf.shape(rows)[0])
        row_squares = tf.math.unsorted_segment_sum(tf.square(values), positions, tf.shape(rows)[0])
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = (
            tf.cast(learning_rate, dtype)
            * tf.sqrt(1 - tf.pow(beta_2, step))
            / (1 - tf.pow(beta_1, step))
        )
        index = self._get_variable_index(variable)
        momentum = _tf_variable(self._momentums[index])
        velocity = _tf_variable(self._velocities[index])
        row_momentum = beta_1 * tf.gather(momentum, rows) + (1 - beta_1) * row_gradient
        row_velocity = beta_2 * tf.gather(velocity, rows) + (1 - beta_2) * row_squares
        momentum.scatter_update(tf.IndexedSlices(row_momentum, rows))
        velocity.scatter_update(tf.IndexedSlices(row_velocity, rows))
        step_rows = alpha * row_momentum / (tf.sqrt(row_velocity) + self.epsilon)
        _tf_variable(variable).scatter_sub(tf.IndexedSlices(step_rows, rows))


def gather_rows(table: Any, indices: Any) -> tf.Tensor:
    """Rows ``indices`` of ``table`` (a Keras or TF variable), reading only those rows.

    A TensorFlow sparse read (``ResourceGather``). Keras' ``Embedding`` and ``tf.gather``
    on a Keras variable read the whole table first (``ReadVariableOp``) and gather from
    that, and once ``LazyAdam`` has scattered into a table TensorFlow keeps the variable
    in copy-on-read mode, where every whole-table read is a copy: at ML-20M's shape two
    copies of the 35 MB user table per step (Keras also reads it for its shape), which
    cost more than the rest of the step (issue 16; ``benchmarks/train_step_scale.py``).
    """
    return tf.gather(_tf_variable(table), indices)


@keras.saving.register_keras_serializable(package="ncf")
class RowEmbedding(keras.layers.Embedding):
    """Keras' ``Embedding`` with its lookup by ``gather_rows`` (no whole-table read)."""

    def call(self, inputs: Any) -> Any:
        """``[*inputs.shape, output_dim]`` rows of ``inputs`` (non-negative indices)."""
        if inputs.dtype not in (tf.int32, tf.int64):  # as Keras' Embedding does
            inputs = tf.cast(inputs, tf.int32)
        return gather_rows(self.embeddings, inputs)


def _tf_variable(variable: Any) -> tf.Variable:
    """The ``tf.Variable`` behind a Keras variable (scatters are methods of the former)."""
    return variable.value if isinstance(variable, keras.Variable) else variable
