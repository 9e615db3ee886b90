"""The NCF families (GMF, MLP, NeuMF): a Keras model fitted epoch by epoch.

Each epoch draws its examples from the objective (fresh negatives for implicit
feedback), fits one pass through ``tf.data`` in large batches, scores the
validation split and records the epoch in a ``TrainingState`` that is
checkpointed atomically. The best epoch's weights are kept; early stopping
waits ``early_stopping_patience`` epochs. A SIGTERM ends the pass after the
current batch and writes nothing, so the last end-of-epoch checkpoint is where
the next job resumes (see ``training.state``). A non-finite loss stops the fit
with a ``TrainingDivergedError``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ncf_contract.metric_lines import format_metric_line
from ncf_contract.model_dir import SAVED_MODEL_DIR
from ncf_contract.ranking import unit_item_vectors
from training.config import TrainingConfig
from training.errors import TrainingDivergedError
from training.families.base import FitContext, FitResult, FittedModel, validation_of
from training.families.lazy_adam import LazyAdam
from training.families.ncf_model import NCF
from training.objectives import Examples, Objective, Scorer
from training.signals import StopFlag
from training.state import TrainingState, checkpoint_file

logger = logging.getLogger(__name__)

#: Pairs scored per forward pass during evaluation.
SCORE_CHUNK = 1 << 18
#: Batches per call into the compiled training step (see ``compile_model``).
STEPS_PER_EXECUTION = 16

OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "adagrad": keras.optimizers.Adagrad,
    "rmsprop": keras.optimizers.RMSprop,
}
#: With ``sparse_updates`` (the default), optimizers whose Keras version updates every row of
#: an embedding table on every step are replaced by one that updates only the looked-up rows
#: (see ``training.families.lazy_adam``). Keras' SGD and Adagrad already apply sparse
#: gradients row-wise; RMSprop has no lazy counterpart here and stays dense.
SPARSE_OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {"adam": LazyAdam}


class KerasScorer:
    """Batched, compiled inference of a Keras NCF model, for evaluation."""

    def __init__(self, model: NCF) -> None:
        self.num_items = model.num_items

        @tf.function(reduce_retracing=True)
        def forward(users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
            return tf.reshape(model((users, items), training=False), [-1])

        self._forward = forward
        self._all_items = None
        if isinstance(model, NCF) and model.model_type == "gmf":
            # A dot product: every item of a block of users is one matrix product, not a
            # gather of [users x items, d] rows (on ML-20M shapes 3.7G pairs per full ranking).
            @tf.function(reduce_retracing=True)
            def all_items(users: tf.Tensor) -> tf.Tensor:
                kernel = tf.reshape(model.output_dense.kernel, [1, -1])
                user_rows = tf.gather(model.gmf_user.embeddings, users) * kernel
                logits = tf.matmul(user_rows, model.gmf_item.embeddings, transpose_b=True)
                return model.output_dense.activation(logits + model.output_dense.bias)

            self._all_items = all_items

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of ``(users[j], items[j])`` (any equal shapes), float32, same shape."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        flat_users = users.reshape(-1).astype(np.int64)
        flat_items = items.reshape(-1).astype(np.int64)
        out = np.empty(flat_users.shape[0], dtype=np.float32)
        for start in range(0, len(out), SCORE_CHUNK):
            stop = start + SCORE_CHUNK
            out[start:stop] = self._forward(flat_users[start:stop], flat_items[start:stop]).numpy()
        return out.reshape(users.shape)

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]`` scores of every item for each user."""
        users = np.asarray(users, dtype=np.int64)
        if self._all_items is not None:
            return np.asarray(self._all_items(users), dtype=np.float32)
        grid_users = np.repeat(users, self.num_items)
        grid_items = np.tile(np.arange(self.num_items, dtype=np.int64), len(users))
        return self.score_pairs(grid_users, grid_items).reshape(len(users), self.num_items)


class _ServingModule(tf.Module):
    """TF Serving signature: ``user_index, item_index`` int64 ``[batch]`` -> ``score`` float32."""

    def __init__(self, model: NCF) -> None:
        super().__init__()
        self.model = model

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int64, name="user_index"),
            tf.TensorSpec([None], tf.int64, name="item_index"),
        ]
    )
    def serve(self, user_index: tf.Tensor, item_index: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = self.model((user_index, item_index), training=False)
        return {"score": tf.cast(tf.reshape(scores, [-1]), tf.float32)}


def save_saved_model(model: NCF, directory: Path) -> None:
    """Write a TensorFlow SavedModel with a ``serving_default`` signature."""
    module = _ServingModule(model)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


class FittedNcf(FittedModel):
    """A trained Keras NCF model."""

    def __init__(self, model: NCF) -> None:
        self.keras_model = model
        self.model_type = model.model_type
        self.output_activation = model.output_activation
        self._scorer = KerasScorer(model)

    @property
    def scorer(self) -> KerasScorer:
        """Compiled batched scoring."""
        return self._scorer

    @property
    def num_mlp_layers(self) -> int:
        """Hidden ``Dense`` layers of the MLP tower."""
        return self.keras_model.num_mlp_layers

    def model_weights(self) -> dict[str, np.ndarray]:
        """The learned arrays under the model directory's names."""
        return self.keras_model.export_weights()

    def write_extras(self, directory: Path) -> None:
        """A TensorFlow SavedModel (``saved_model/``) that TF Serving can load."""
        save_saved_model(self.keras_model, directory / SAVED_MODEL_DIR)


def build_model(config: TrainingConfig, objective: Objective, model_type: str | None = None) -> NCF:
    """An un-compiled ``NCF`` sized for the objective's dataset, every weight created."""
    return NCF(
        num_users=objective.dataset.num_users,
        num_items=objective.dataset.num_items,
        model_type=model_type or config.family,
        gmf_dim=config.gmf_dim,
        mlp_layers=config.mlp_layers,
        gmf_regularization=config.gmf_regularization,
        mlp_regularization=config.mlp_regularization,
        dropout=config.dropout,
        output_activation=objective.output_activation,
    ).build_all()


def compile_model(
    model: keras.Model, config: TrainingConfig, objective: Objective, optimizer: str | None = None
) -> None:
    """Compile with the objective's loss and build the optimizer's variables."""
    name = optimizer or config.optimizer
    optimizer_class = (SPARSE_OPTIMIZERS if config.sparse_updates else OPTIMIZERS).get(
        name, OPTIMIZERS[name]
    )
    model.compile(
        optimizer=optimizer_class(learning_rate=config.learning_rate),
        loss=objective.loss,
        # XLA (Keras' "auto") was slower for these small embedding-bound steps on CPU.
        jit_compile=False,
        # Several batches per call into the compiled step: this model's batches are cheap, so
        # the per-call Python overhead was a large share of each step (about 1.2-1.35x more
        # samples/s measured on MovieLens-1M shapes, batch 2048). SIGTERM is still seen
        # within STEPS_PER_EXECUTION batches.
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    model.optimizer.build(model.trainable_variables)


class _StopOnFlag(keras.callbacks.Callback):
    """Ends ``fit`` after the current batch once the stop flag is set."""

    def __init__(self, stop_flag: StopFlag) -> None:
        super().__init__()
        self.stop_flag = stop_flag

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stop_flag:
            self.model.stop_training = True


def fit_one_epoch(
    model: keras.Model, examples: Examples, batch_size: int, stop_flag: StopFlag
) -> float:
    """Fit one pass over ``examples``; returns the mean training loss.

    Raises:
        TrainingDivergedError: The loss is NaN or infinite.
    """
    users, items, targets, weights = examples
    inputs = (users.astype(np.int32), items.astype(np.int32))
    labels = targets.astype(np.float32).reshape(-1, 1)
    # Keras applies sample weights (recency_half_life) as the third element of each batch.
    slices = (inputs, labels) if weights is None else (inputs, labels, weights.astype(np.float32))
    data = tf.data.Dataset.from_tensor_slices(slices).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    history = model.fit(
        data,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[_StopOnFlag(stop_flag), keras.callbacks.TerminateOnNaN()],
    )
    losses = history.history.get("loss", [])
    loss = float(losses[-1]) if losses else float("nan")
    if not stop_flag and not math.isfinite(loss):
        raise TrainingDivergedError(loss)
    return loss


def compatibility(config: TrainingConfig, objective: Objective) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: everything but the epoch budget.

    Every hyperparameter that shapes the run is included (so parallel tuning trials sharing a
    checkpoint location never resume each other), with the data's size.
    """
    ignored = {"epochs", "early_stopping_patience", "full_ranking"}
    settings = {k: v for k, v in config.to_json().items() if k not in ignored}
    return {
        **settings,
        "num_users": objective.dataset.num_users,
        "num_items": objective.dataset.num_items,
        "train_interactions": len(objective.dataset.train),
    }


class NcfFamily:
    """GMF, MLP or NeuMF (``config.model_type``), fitted by mini-batch gradient descent.

    ``build``, ``scorer`` and ``fitted`` are the hooks another Keras family
    (``training.families.hybrid``) overrides to reuse the epoch loop.
    """

    def build(self, config: TrainingConfig, objective: Objective) -> Any:
        """An un-compiled Keras model, every weight created."""
        return build_model(config, objective)

    def scorer(self, model: Any) -> Scorer:
        """Evaluation scoring of ``model`` (it follows the model's weights as they change)."""
        return KerasScorer(model)

    def fitted(self, model: Any) -> FittedModel:
        """The fitted model handed to the trainer and the export."""
        return FittedNcf(model)

    def fit(self, config: TrainingConfig, objective: Objective, context: FitContext) -> FitResult:
        """Fit epoch by epoch; see the module docstring."""
        keras.utils.set_random_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        timings = {"pretraining": 0.0, "training": 0.0, "validation": 0.0}
        model = self.build(config, objective)
        compile_model(model, config, objective, optimizer="sgd" if config.pretrain else None)
        expected = compatibility(config, objective)
        checkpoint_path = context.checkpoint_dir / checkpoint_file(expected)
        state = TrainingState.load(checkpoint_path, model, expected)
        if state is not None:
            assert state.rng_state is not None
            rng.bit_generator.state = state.rng_state
            logger.info("resuming from checkpoint %s after epoch %d", checkpoint_path, state.epoch)
            context.emit(f"resuming from checkpoint after epoch {state.epoch}")
        else:
            state = TrainingState()
            if config.pretrain:
                started = time.perf_counter()
                towers = _pretrain(config, objective, rng, context.stop_flag)
                timings["pretraining"] = time.perf_counter() - started
                if towers is None:
                    return FitResult(model=None, timings=timings, stopped=True)
                model.load_pretrained(*towers)
        resumed_from = state.epoch
        scorer = self.scorer(model)

        for epoch in range(state.epoch + 1, config.epochs + 1):
            if state.early_stopped:
                break
            started = time.perf_counter()
            # Derived from the epoch number, so a resumed job continues the same schedule.
            model.optimizer.learning_rate.assign(
                config.learning_rate * config.learning_rate_decay ** (epoch - 1)
            )
            loss = fit_one_epoch(
                model, objective.epoch_examples(rng), config.batch_size, context.stop_flag
            )
            fitted = time.perf_counter()
            timings["training"] += fitted - started
            if context.stop_flag:
                context.emit(
                    f"stopped by SIGTERM during epoch {epoch}; the checkpoint after epoch "
                    f"{state.epoch} is where the next job resumes"
                )
                return FitResult(model=None, history=state.history, timings=timings, stopped=True)
            validation = objective.validation_metrics(
                scorer, lambda: unit_item_vectors(model.export_weights())
            )
            timings["validation"] += time.perf_counter() - fitted
            record = {
                "epoch": epoch,
                "train_loss": loss,
                **validation,
                "epoch_seconds": time.perf_counter() - started,
            }
            state.rng_state = dict(rng.bit_generator.state)
            state.record(
                record,
                validation[objective.selection_metric],
                objective.is_better if context.select_best else _always,
                model.get_weights,
                config.early_stopping_patience,
                eligible=objective.meets_constraints(validation),
            )
            context.emit(
                format_metric_line(
                    f"epoch={epoch}",
                    {
                        "train_loss": loss,
                        **objective.log_keys(validation, "val"),
                        "epoch_seconds": record["epoch_seconds"],
                    },
                )
            )
            if context.report is not None:
                context.report(epoch, validation)
            if state.early_stopped:
                logger.info(
                    "early stopping after epoch %d: val %s has not improved for %d epochs "
                    "(best %.6f at epoch %d)",
                    epoch,
                    objective.selection_metric,
                    state.epochs_without_gain,
                    state.best_value,
                    state.best_epoch,
                )
            state.save(checkpoint_path, model, expected)

        if state.best_weights:
            model.set_weights(state.best_weights)
        best = state.best_record
        return FitResult(
            model=self.fitted(model),
            history=state.history,
            best_epoch=state.best_epoch,
            validation=validation_of(best),
            timings=timings,
            resumed_from_epoch=resumed_from,
            early_stopped=state.early_stopped,
        )


def _always(value: float, best: float | None) -> bool:
    """Every epoch counts as the best: the last one is kept."""
    return True


def _pretrain(
    config: TrainingConfig, objective: Objective, rng: np.random.Generator, stop_flag: StopFlag
) -> tuple[NCF, NCF] | None:
    """Train GMF and MLP separately (Adam), as the paper does before NeuMF."""
    towers = []
    for tower_type in ("gmf", "mlp"):
        tower = build_model(config, objective, tower_type)
        compile_model(tower, config, objective, optimizer="adam")
        for epoch in range(1, config.pretrain_epochs + 1):
            started = time.perf_counter()
            loss = fit_one_epoch(tower, objective.epoch_examples(rng), config.batch_size, stop_flag)
            if stop_flag:
                return None
            logger.info(
                "pretraining %s: epoch %d/%d loss %.4f (%.1f s)",
                tower_type,
                epoch,
                config.pretrain_epochs,
                loss,
                time.perf_counter() - started,
            )
        towers.append(tower)
    return towers[0], towers[1]
