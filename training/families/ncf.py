"""The NCF families (GMF, MLP, NeuMF): a Keras model fitted epoch by epoch.

Each epoch draws its examples from the objective (fresh negatives for implicit
feedback), fits one pass through ``tf.data`` in large batches, scores the
validation split and records the epoch in a ``TrainingState`` that is
checkpointed atomically. The best epoch's weights are kept; early stopping
waits ``early_stopping_patience`` epochs. A SIGTERM ends the pass after the
current batch and writes nothing, so the last end-of-epoch checkpoint is where
the next job resumes (see ``training.state``). A non-finite loss stops the fit
with a ``TrainingDivergedError``.

NeuMF with ``pretrain=true`` first trains its GMF and MLP towers apart, fuses them
with the GMF share that ranks best on validation and records the fused model as
epoch 0 before fine-tuning it with SGD: fine-tuning is kept only for the epochs
that beat the fused towers on validation, and a refit after epoch 0 was chosen
fine-tunes for no epoch.

Across several hosts or GPUs the same loop runs under a ``tf.distribute`` strategy
(``training.distributed``): each worker draws the examples of its own users, the
gradients are all-reduced, the learning rate follows the global batch
(``training.cluster.scaled_learning_rate``) and only the chief writes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ncf_contract.metric_lines import format_metric_line
from ncf_contract.model_dir import SAVED_MODEL_DIR
from ncf_contract.ranking import unit_item_vectors
from training.cluster import scaled_learning_rate, user_shards
from training.config import TrainingConfig
from training.distributed import DistributedSteps
from training.errors import DataError, TrainingDivergedError
from training.families.base import FitContext, FitResult, FittedModel, validation_of
from training.families.lazy_adam import LazyAdam, gather_rows
from training.families.ncf_model import NCF
from training.objectives import Examples, Objective, Scorer, objective_for
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
                user_rows = gather_rows(model.gmf_user.embeddings, users) * kernel
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
        softmax_candidates=objective.softmax_candidates,
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


#: Batches per element handed from NumPy to tf.data (see ``batched_dataset``).
CHUNK_BATCHES = 64


@contextlib.contextmanager
def batched_dataset(arrays: Any, batch_size: int) -> Iterator[tf.data.Dataset]:
    """``arrays`` (a nested tuple of equal-length arrays) in order, in batches of ``batch_size``.

    The same batches as ``from_tensor_slices(arrays).batch(batch_size)``, the last one
    shorter. tf.data reads the arrays through a generator, ``CHUNK_BATCHES`` batches at a
    time (NumPy views reshaped to ``[batches, batch_size, ...]``, then unbatched), so:

    - no copy of the epoch is made: ``from_tensor_slices`` copied the arrays into
      tensors, a second epoch in memory (1.2 GB at 20M interactions, issue 16), and
      something in TF kept the last one alive until the next fit;
    - batches are not assembled example by example (``.batch`` took one of this
      machine's two cores at ~0.8M examples/s).

    The arrays are let go when the ``with`` block ends, even if tf.data still holds the
    generator (a fit stopped mid-epoch).
    """
    source = [tf.nest.flatten(arrays)]
    total = len(source[0][0])
    full = total // batch_size * batch_size
    step = CHUNK_BATCHES * batch_size
    # The nesting of ``arrays`` without them (nothing below may hold the arrays).
    signature = tf.nest.pack_sequence_as(
        arrays,
        [tf.TensorSpec((None, batch_size, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in source[0]],
    )

    def chunk(start: int) -> Any:
        # Copied (a few hundred kB): a tensor tf.data prefetched would otherwise alias, and
        # keep alive, the whole epoch's array.
        stop = min(full, start + step)
        return tf.nest.pack_sequence_as(
            signature,
            [a[start:stop].reshape(-1, batch_size, *a.shape[1:]).copy() for a in source[0]],
        )

    def chunks() -> Iterator[Any]:
        # No local name holds the arrays between chunks (``source`` is emptied on exit).
        for start in range(0, full, step):
            yield chunk(start)

    data = tf.data.Dataset.from_generator(chunks, output_signature=signature).unbatch()
    if full < total:
        tail = [array[full:].copy() for array in source[0]]
        data = data.concatenate(
            tf.data.Dataset.from_tensors(tf.nest.pack_sequence_as(signature, tail))
        )
    # Known length: Keras counts the steps as it did with tensors.
    data = data.apply(tf.data.experimental.assert_cardinality(-(-total // batch_size)))
    try:
        yield data.prefetch(tf.data.AUTOTUNE)
    finally:
        source.clear()


def fit_one_epoch(
    model: keras.Model, examples: Examples, batch_size: int, stop_flag: StopFlag
) -> float:
    """Fit one pass over ``examples``; returns the mean training loss.

    Raises:
        TrainingDivergedError: The loss is NaN or infinite.
    """
    users, items, targets, weights = examples
    # No copies of arrays already of the right type (100M examples x 4 bytes each at 20M
    # interactions with 4 negatives).
    inputs = (users.astype(np.int32, copy=False), items.astype(np.int32, copy=False))
    labels = targets.astype(np.float32, copy=False).reshape(-1, 1)
    # Keras applies sample weights (recency_half_life) as the third element of each batch.
    slices = (
        (inputs, labels)
        if weights is None
        else (inputs, labels, weights.astype(np.float32, copy=False))
    )
    with batched_dataset(slices, batch_size) as data:
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
    ignored = {"epochs", "early_stopping_patience", "full_ranking", "collective_timeout"}
    settings = {k: v for k, v in config.to_json().items() if k not in ignored}
    return {
        **settings,
        "num_users": objective.dataset.num_users,
        "num_items": objective.dataset.num_items,
        "train_interactions": len(objective.dataset.train),
    }


class _Epochs:
    """This worker's epochs: its examples, drawn and fitted with or without a strategy.

    Without a strategy (one CPU or GPU) an epoch is one Keras ``fit`` pass over every
    example. Under one (``training.distributed``) the worker draws the examples of its
    own users only (``training.cluster.user_shards``) and ``DistributedSteps`` fits
    them, the gradients all-reduced with the other replicas. Each epoch's random
    stream is derived from ``(seed, worker, phase, epoch)``, so a resumed job draws
    what the interrupted one would have, on every worker.
    """

    def __init__(self, config: TrainingConfig, objective: Objective, context: FitContext) -> None:
        self.config, self.objective, self.distribution = config, objective, context.distribution
        train = objective.dataset.train
        #: This worker's train rows (``None``: all of them).
        self.rows: np.ndarray | None = None
        self.worker = 0
        self._steps: dict[int, DistributedSteps] = {}
        if self.distribution is not None:
            cluster = self.distribution.cluster
            shards = user_shards(
                train.user_index, objective.dataset.num_users, cluster.num_workers, config.seed
            )
            self.worker = cluster.worker_index
            self.rows = np.flatnonzero(shards[train.user_index] == self.worker)
            if len(self.rows) == 0:
                raise DataError(
                    f"host {cluster.current_host} has no training users: the train channel has "
                    f"{objective.dataset.num_users} users for {cluster.num_workers} instances; "
                    "use fewer instances"
                )
            logger.info(
                "worker %d of %d trains on %d of %d interactions (its users' share)",
                self.worker,
                cluster.num_workers,
                len(self.rows),
                len(train),
            )

    def for_objective(self, objective: Objective) -> _Epochs:
        """This worker's epochs drawing another objective's examples (a pre-trained tower's)."""
        other = copy.copy(self)
        other.objective, other._steps = objective, {}
        return other

    def rng(self, phase: int, epoch: int) -> np.random.Generator:
        """The random stream of ``epoch`` of ``phase`` (0: training, 1, 2: pre-training)."""
        return np.random.default_rng([self.config.seed, self.worker, phase, epoch])

    def fit(
        self, model: NCF, rng: np.random.Generator, stop_flag: StopFlag, what: str
    ) -> tuple[float, bool]:
        """Fit one epoch; returns ``(mean training loss, stopped by SIGTERM)``.

        Raises:
            TrainingDivergedError: The loss is NaN or infinite.
            WorkerLostError: Another worker stopped answering.
        """
        examples = self.objective.epoch_examples(rng, self.rows)
        if self.distribution is None:
            loss = fit_one_epoch(model, examples, self.objective.batch_size, stop_flag)
            return loss, bool(stop_flag)
        if id(model) not in self._steps:
            self._steps[id(model)] = DistributedSteps(self.distribution, model)
        assert self.rows is not None
        per_interaction = len(examples.users) // len(self.rows)
        loss, stopped = self._steps[id(model)].fit_epoch(
            examples,
            self.objective.batch_size,
            len(self.objective.dataset.train) * per_interaction,
            stop_flag,
            what,
        )
        if not stopped and not math.isfinite(loss):
            raise TrainingDivergedError(loss)
        return loss, stopped


def _for_replicas(config: TrainingConfig, context: FitContext) -> TrainingConfig:
    """``config`` with the learning rate scaled to the global batch (``training.cluster``)."""
    if context.distribution is None:
        return config
    replicas = context.distribution.num_replicas
    learning_rate = scaled_learning_rate(
        config.learning_rate, config.optimizer, config.learning_rate_scaling, replicas
    )
    logger.info(
        "%d replicas: global batch %d (batch_size %d per replica), learning rate %.6g "
        "(%.6g scaled %s)",
        replicas,
        config.batch_size * replicas,
        config.batch_size,
        learning_rate,
        config.learning_rate,
        config.learning_rate_scaling,
    )
    return replace(config, learning_rate=learning_rate)


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
        """Fit epoch by epoch; see the module docstring.

        Under a strategy every worker fits, validates and keeps the same state (the
        replicas' weights are identical after each all-reduce); only the chief writes
        checkpoints and emits metric lines.
        """
        keras.utils.set_random_seed(config.seed)
        config = _for_replicas(config, context)
        epochs = _Epochs(config, objective, context)
        timings = {"pretraining": 0.0, "training": 0.0, "validation": 0.0}
        with _scope(context):
            model = self.build(config, objective)
            compile_model(model, config, objective, optimizer="sgd" if config.pretrain else None)
        emit = context.emit if context.is_chief else _log_line
        expected = compatibility(config, objective)
        checkpoint_path = context.checkpoint_dir / checkpoint_file(expected)
        state = _starting_state(config, objective, model, epochs, context, timings)
        if state is None:
            return FitResult(model=None, timings=timings, stopped=True)
        resumed_from = state.epoch
        scorer = self.scorer(model)

        def close_epoch(epoch: int, loss: float | None, started: float, fitted: float) -> None:
            """Validate the model after ``epoch``, record it, log it and checkpoint it."""
            validation = objective.validation_metrics(
                scorer, lambda: unit_item_vectors(model.export_weights())
            )
            timings["validation"] += time.perf_counter() - fitted
            trained = {} if loss is None else {"train_loss": loss}
            record = {
                "epoch": epoch,
                **trained,
                **validation,
                "epoch_seconds": time.perf_counter() - started,
            }
            state.record(
                record,
                validation[objective.selection_metric],
                objective.is_better if context.select_best else _always,
                model.get_weights,
                config.early_stopping_patience,
                eligible=objective.meets_constraints(validation),
            )
            emit(
                format_metric_line(
                    f"epoch={epoch}",
                    {
                        **trained,
                        **objective.log_keys(validation, "val"),
                        "epoch_seconds": record["epoch_seconds"],
                    },
                )
            )
            if context.report is not None and epoch:
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
            if context.is_chief:
                state.save(checkpoint_path, model, expected)

        if config.pretrain and not state.history:
            # The fused pre-trained towers are a candidate too: epoch 0, before fine-tuning.
            now = time.perf_counter()
            close_epoch(0, None, now, now)

        for epoch in range(state.epoch + 1, config.epochs + 1):
            if state.early_stopped:
                break
            started = time.perf_counter()
            # Derived from the epoch number, so a resumed job continues the same schedule.
            _set_scheduled_rate(model, config, epoch)
            loss, stopped = epochs.fit(
                model, epochs.rng(0, epoch), context.stop_flag, f"epoch {epoch}"
            )
            fitted = time.perf_counter()
            timings["training"] += fitted - started
            if stopped:
                emit(
                    f"stopped by SIGTERM during epoch {epoch}; the checkpoint after epoch "
                    f"{state.epoch} is where the next job resumes"
                )
                return FitResult(model=None, history=state.history, timings=timings, stopped=True)
            close_epoch(epoch, loss, started, fitted)

        if state.best_weights:
            model.set_weights(state.best_weights)
        if context.distribution is not None:
            # A plain copy for testing and export: reading or saving it runs no collective,
            # so the chief can finish alone while the other workers wait.
            plain = self.build(config, objective)
            plain.set_weights(model.get_weights())
            model = plain
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


def _set_scheduled_rate(model: NCF, config: TrainingConfig, epoch: int) -> None:
    """Set the learning rate of ``epoch`` (1-based): ``learning_rate`` decayed per epoch."""
    model.optimizer.learning_rate.assign(
        config.learning_rate * config.learning_rate_decay ** (epoch - 1)
    )


def _always(value: float, best: float | None) -> bool:
    """Every epoch counts as the best: the last one is kept."""
    return True


def _scope(context: FitContext) -> contextlib.AbstractContextManager[Any]:
    """The strategy's scope (variables mirrored on every replica), or no scope."""
    return context.distribution.scope() if context.distribution else contextlib.nullcontext()


def _starting_state(
    config: TrainingConfig,
    objective: Objective,
    model: NCF,
    epochs: _Epochs,
    context: FitContext,
    timings: dict[str, float],
) -> TrainingState | None:
    """The checkpoint's state (model restored), else a fresh one after any pre-training.

    Returns ``None`` when SIGTERM stopped the pre-training.

    Raises:
        ConfigError: The workers of a multi-worker job start from different checkpoints.
    """
    expected = compatibility(config, objective)
    checkpoint_path = context.checkpoint_dir / checkpoint_file(expected)
    state = TrainingState.load(checkpoint_path, model, expected)
    if state is not None:
        logger.info("resuming from checkpoint %s after epoch %d", checkpoint_path, state.epoch)
        (context.emit if context.is_chief else _log_line)(
            f"resuming from checkpoint after epoch {state.epoch}"
        )
    if context.distribution is not None:
        context.distribution.check_same_start(0 if state is None else state.epoch)
    if state is not None:
        return state
    if config.pretrain:
        started = time.perf_counter()
        towers = _pretrain(config, objective, epochs, context)
        timings["pretraining"] = time.perf_counter() - started
        if towers is None:
            return None
        alpha = _fusion_weight(model, towers, objective)
        logger.info("pretraining: GMF share %.2f of the fused output layer (on validation)", alpha)
        model.load_pretrained(*towers, alpha=alpha)
    return TrainingState()


#: The GMF shares of the fused NeuMF output layer tried after pre-training.
FUSION_WEIGHTS = (0.2, 0.35, 0.5, 0.65, 0.8)


def _fusion_weight(model: NCF, towers: tuple[NCF, NCF], objective: Objective) -> float:
    """The GMF share α of the fused output layer that ranks best on validation.

    The paper fixes α = 0.5; the two towers pre-train to different strengths, so the
    share is chosen here from ``FUSION_WEIGHTS`` by the objective's selection metric
    (every worker of a job computes the same choice from the same data).
    """
    scorer = KerasScorer(model)
    best: tuple[float, float] | None = None
    for alpha in FUSION_WEIGHTS:
        model.load_pretrained(*towers, alpha=alpha)
        value = objective.validation_accuracy(scorer)[objective.selection_metric]
        logger.debug("pretraining: GMF share %.2f -> validation %.4f", alpha, value)
        if best is None or objective.is_better(value, best[0]):
            best = (value, alpha)
    assert best is not None
    return best[1]


def _log_line(line: str) -> None:
    """A worker's progress line, logged as ``key: value``.

    Not ``key=value``: no MetricDefinitions regex may record a second copy of the chief's figures.
    """
    logger.info("%s", line.replace("=", ": "))


def _pretrain(
    config: TrainingConfig, objective: Objective, epochs: _Epochs, context: FitContext
) -> tuple[NCF, NCF] | None:
    """Train GMF and MLP separately (Adam), as the paper does before NeuMF.

    Each tower trains with the loss its family would (``TrainingConfig.loss_for``) for
    ``pretrain_epochs`` epochs, on the learning-rate schedule its family would have
    (``learning_rate`` decayed by ``learning_rate_decay`` each epoch).
    """
    towers = []
    for phase, tower_type in enumerate(("gmf", "mlp"), start=1):
        tower_objective = objective_for(replace(config, model_type=tower_type), objective.dataset)
        tower_epochs = epochs.for_objective(tower_objective)
        with _scope(context):
            tower = build_model(config, tower_objective, tower_type)
            compile_model(tower, config, tower_objective, optimizer="adam")
        for epoch in range(1, config.pretrain_epochs + 1):
            started = time.perf_counter()
            _set_scheduled_rate(tower, config, epoch)
            loss, stopped = tower_epochs.fit(
                tower,
                tower_epochs.rng(phase, epoch),
                context.stop_flag,
                f"pre-training {tower_type} epoch {epoch}",
            )
            if stopped:
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
