"""The training loop: per-epoch negatives, validation-based model selection, checkpoints.

- Each epoch draws fresh negatives (``training.sampling.training_examples``),
  feeds them through ``tf.data`` in large batches and fits one Keras epoch.
- After each epoch the model is scored on the validation split only: sampled
  HR/NDCG@K against negatives drawn once with a fixed seed (implicit feedback),
  or RMSE (explicit feedback). ``validation_metric`` picks the best epoch; early
  stopping waits ``early_stopping_patience`` epochs; the best weights are
  restored at the end.
- Test figures are computed once, at the end, with the best weights.
- A checkpoint (weights, optimizer state, epoch, best-so-far, history, the
  negative sampler's RNG state) is written atomically at every epoch end; a job
  that finds one resumes after its epoch.
- ``StopFlag`` is set on SIGTERM: the current batch finishes, a checkpoint is
  written and ``train`` returns with ``stopped=True``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ncf_contract.metric_lines import format_metric_line
from training import evaluation, sampling
from training.config import TrainingConfig
from training.dataset import Dataset
from training.model import NCF
from training.signals import StopFlag

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "ncf-checkpoint.npz"
#: Pairs scored per forward pass during evaluation.
_SCORE_CHUNK = 1 << 18
#: Users per block in full-ranking evaluation.
_FULL_RANKING_USERS = 256
#: Offsets from ``seed`` for the independent random streams.
_VALIDATION_SEED_OFFSET, _TEST_SEED_OFFSET = 1, 2


@dataclass
class TrainingResult:
    """What a training run produced.

    Attributes:
        model: The model with the best validation weights.
        history: One dict per completed epoch (``epoch``, ``train_loss``,
            validation metrics, ``epoch_seconds``).
        best_epoch: The epoch whose weights ``model`` holds (1-based; 0 if none).
        validation: The best epoch's validation metrics (``hr``/``ndcg`` or ``rmse``).
        test: Test metrics (``hr``, ``ndcg``, ``full_hr``, ``full_ndcg`` or ``rmse``);
            empty without a test channel.
        timings: Seconds spent in ``training``, ``validation``, ``test``, ``pretraining``.
        resumed_from_epoch: The checkpoint's epoch this run resumed after (0 if none).
        stopped: True when a SIGTERM stopped the run (no model should be published).
        early_stopped: True when early stopping ended the run.
    """

    model: NCF
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    validation: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    resumed_from_epoch: int = 0
    stopped: bool = False
    early_stopped: bool = False


class _StopOnFlag(keras.callbacks.Callback):
    """Ends ``fit`` after the current batch once the stop flag is set."""

    def __init__(self, stop_flag: StopFlag) -> None:
        super().__init__()
        self.stop_flag = stop_flag

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stop_flag:
            self.model.stop_training = True


def build_model(config: TrainingConfig, dataset: Dataset, model_type: str | None = None) -> NCF:
    """An un-compiled ``NCF`` sized for ``dataset`` with every weight created."""
    return NCF(
        num_users=dataset.num_users,
        num_items=dataset.num_items,
        model_type=model_type or config.model_type,
        gmf_dim=config.gmf_dim,
        mlp_layers=config.mlp_layers,
        gmf_regularization=config.gmf_regularization,
        mlp_regularization=config.mlp_regularization,
        dropout=config.dropout,
        output_activation="sigmoid" if config.feedback == "implicit" else "linear",
    ).build_all()


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    optimizers = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "adagrad": keras.optimizers.Adagrad,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return optimizers[name](learning_rate=learning_rate)


#: Batches per call into the compiled training step (see ``_compile``).
STEPS_PER_EXECUTION = 16


def _compile(model: NCF, config: TrainingConfig, optimizer: str | None = None) -> None:
    loss = "binary_crossentropy" if config.feedback == "implicit" else "mean_squared_error"
    # XLA (Keras' "auto") was slower for these small embedding-bound steps on CPU.
    model.compile(
        optimizer=_optimizer(optimizer or config.optimizer, config.learning_rate),
        loss=loss,
        jit_compile=False,
        # Several batches per call into the compiled step: this model's batches are cheap, so
        # the per-call Python overhead was a large share of each step (about 1.2-1.35x more
        # samples/s measured on MovieLens-1M shapes, batch 2048). SIGTERM is still seen
        # within STEPS_PER_EXECUTION batches.
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    model.optimizer.build(model.trainable_variables)


class Scorer:
    """Batched, compiled inference of a model, for evaluation."""

    def __init__(self, model: NCF, num_items: int) -> None:
        self.num_items = num_items

        @tf.function(reduce_retracing=True)
        def forward(users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
            return tf.reshape(model((users, items), training=False), [-1])

        self._forward = forward

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of ``(users[j], items[j])`` (any equal shapes), float32, same shape."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        flat_users = users.reshape(-1).astype(np.int64)
        flat_items = items.reshape(-1).astype(np.int64)
        out = np.empty(flat_users.shape[0], dtype=np.float32)
        for start in range(0, len(out), _SCORE_CHUNK):
            stop = start + _SCORE_CHUNK
            out[start:stop] = self._forward(flat_users[start:stop], flat_items[start:stop]).numpy()
        return out.reshape(users.shape)

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]`` scores of every item for each user."""
        users = np.asarray(users, dtype=np.int64)
        grid_users = np.repeat(users, self.num_items)
        grid_items = np.tile(np.arange(self.num_items, dtype=np.int64), len(users))
        return self.score_pairs(grid_users, grid_items).reshape(len(users), self.num_items)


# --------------------------------------------------------------------------- checkpoints


def _compatibility(config: TrainingConfig, dataset: Dataset) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed (epochs may change)."""
    return {
        "model_type": config.model_type,
        "feedback": config.feedback,
        "gmf_dim": config.gmf_dim,
        "mlp_layers": list(config.mlp_layers),
        "optimizer": "sgd" if config.pretrain else config.optimizer,
        "num_users": dataset.num_users,
        "num_items": dataset.num_items,
    }


def save_checkpoint(path: Path, model: NCF, state: dict[str, Any], best_weights: list[Any]) -> None:
    """Write weights, optimizer variables, best weights and ``state`` to ``path`` atomically."""
    arrays: dict[str, np.ndarray] = {"state": np.array(json.dumps(state))}
    for index, value in enumerate(model.get_weights()):
        arrays[f"weight_{index}"] = np.asarray(value)
    for index, variable in enumerate(model.optimizer.variables):
        arrays[f"optimizer_{index}"] = keras.ops.convert_to_numpy(variable)
    for index, value in enumerate(best_weights):
        arrays[f"best_{index}"] = np.asarray(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)


def _load_checkpoint(
    path: Path, model: NCF, expected: dict[str, Any]
) -> tuple[dict[str, Any], list[np.ndarray]] | None:
    """Restore ``model`` and its optimizer from ``path``; ``None`` if absent or incompatible."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            state = json.loads(str(stored["state"]))
            names = stored.files
            weights = [
                stored[f"weight_{i}"] for i in range(sum(n.startswith("weight_") for n in names))
            ]
            optimizer = [
                stored[f"optimizer_{i}"]
                for i in range(sum(n.startswith("optimizer_") for n in names))
            ]
            best = [stored[f"best_{i}"] for i in range(sum(n.startswith("best_") for n in names))]
    except Exception as error:  # a corrupt file must not kill the job: start over
        logger.warning("ignoring unreadable checkpoint %s: %r", path, error)
        return None
    if state.get("compatibility") != expected:
        logger.warning(
            "ignoring checkpoint %s: written for %s, this job is %s",
            path,
            state.get("compatibility"),
            expected,
        )
        return None
    model.set_weights(weights)
    if len(optimizer) != len(model.optimizer.variables):
        logger.warning("checkpoint optimizer state does not match; optimizer starts afresh")
    else:
        for variable, value in zip(model.optimizer.variables, optimizer, strict=True):
            variable.assign(value)
    return state, best


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class _RankingTask:
    users: np.ndarray
    held_out: np.ndarray
    negatives: np.ndarray


def _validation_task(config: TrainingConfig, dataset: Dataset) -> _RankingTask:
    users, held_out = dataset.validation.user_index, dataset.validation.item_index
    negatives = evaluation.sample_evaluation_negatives(
        users,
        held_out,
        dataset.all_seen,
        dataset.num_items,
        config.num_eval_negatives,
        config.seed + _VALIDATION_SEED_OFFSET,
    )
    return _RankingTask(users, held_out, negatives)


def _validate(
    config: TrainingConfig, scorer: Scorer, dataset: Dataset, task: Any
) -> dict[str, float]:
    if config.feedback == "explicit":
        predicted = scorer.score_pairs(dataset.validation.user_index, dataset.validation.item_index)
        return {"rmse": float(evaluation.rmse(predicted, dataset.validation.rating))}
    metrics = evaluation.sampled_ranking_metrics(
        scorer.score_pairs, task.users, task.held_out, task.negatives, config.top_k
    )
    return {name: float(value) for name, value in metrics.items()}


def _is_better(config: TrainingConfig, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if config.feedback == "explicit" else value > best


def _selection_metric(config: TrainingConfig) -> str:
    return "rmse" if config.feedback == "explicit" else config.validation_metric


def _log_keys(config: TrainingConfig, metrics: dict[str, float], prefix: str) -> dict[str, float]:
    keyed = {}
    for name, value in metrics.items():
        suffix = "" if name == "rmse" else f"@{config.top_k}"
        keyed[f"{prefix}_{name}{suffix}"] = value
    return keyed


def evaluate_test(
    config: TrainingConfig,
    scorer: Scorer,
    dataset: Dataset,
    test_negatives: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> dict[str, float]:
    """Test metrics, computed once with the final weights; empty without test data.

    Implicit feedback: sampled HR/NDCG@K (the exact ``test_negatives`` if given,
    else ``num_eval_negatives`` drawn with a fixed seed) and, if
    ``full_ranking``, HR/NDCG@K over every item the user has not seen.
    Explicit feedback: RMSE.
    """
    if config.feedback == "explicit":
        if dataset.test is None:
            return {}
        predicted = scorer.score_pairs(dataset.test.user_index, dataset.test.item_index)
        return {"rmse": float(evaluation.rmse(predicted, dataset.test.rating))}
    if test_negatives is not None:
        users, held_out, negatives = test_negatives
    elif dataset.test is not None:
        users, held_out = dataset.test.user_index, dataset.test.item_index
        negatives = evaluation.sample_evaluation_negatives(
            users,
            held_out,
            dataset.all_seen,
            dataset.num_items,
            config.num_eval_negatives,
            config.seed + _TEST_SEED_OFFSET,
        )
    else:
        return {}
    metrics = {
        name: float(value)
        for name, value in evaluation.sampled_ranking_metrics(
            scorer.score_pairs, users, held_out, negatives, config.top_k
        ).items()
    }
    if config.full_ranking:
        full = evaluation.full_ranking_metrics(
            scorer.score_all_items,
            users,
            held_out,
            dataset.all_seen,
            config.top_k,
            _FULL_RANKING_USERS,
        )
        metrics.update({f"full_{name}": float(value) for name, value in full.items()})
    return metrics


# --------------------------------------------------------------------------- fitting


def _epoch_examples(
    config: TrainingConfig, dataset: Dataset, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if config.feedback == "explicit":
        order = rng.permutation(len(dataset.train))
        return (
            dataset.train.user_index[order],
            dataset.train.item_index[order],
            dataset.train.rating[order],
        )
    return sampling.training_examples(
        dataset.train, dataset.train_seen, dataset.num_items, config.num_negatives, rng
    )


def _fit_one_epoch(
    model: NCF,
    examples: tuple[np.ndarray, np.ndarray, np.ndarray],
    batch_size: int,
    stop_flag: StopFlag,
) -> float:
    """Fit one pass over ``examples``; returns the mean training loss."""
    users, items, labels = examples
    data = (
        tf.data.Dataset.from_tensor_slices(
            (
                (users.astype(np.int32), items.astype(np.int32)),
                labels.astype(np.float32).reshape(-1, 1),
            )
        )
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    history = model.fit(
        data, epochs=1, verbose=0, shuffle=False, callbacks=[_StopOnFlag(stop_flag)]
    )
    losses = history.history.get("loss", [])
    return float(losses[-1]) if losses else float("nan")


def _pretrain(
    config: TrainingConfig, dataset: Dataset, rng: np.random.Generator, stop_flag: StopFlag
) -> tuple[NCF, NCF] | None:
    """Train GMF and MLP separately (Adam), as the paper does before NeuMF."""
    towers = []
    for tower_type in ("gmf", "mlp"):
        tower = build_model(config, dataset, tower_type)
        _compile(tower, config, optimizer="adam")
        for epoch in range(1, config.pretrain_epochs + 1):
            started = time.perf_counter()
            loss = _fit_one_epoch(
                tower, _epoch_examples(config, dataset, rng), config.batch_size, stop_flag
            )
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


def train(  # noqa: PLR0915 (one loop with its bookkeeping reads best in one place)
    config: TrainingConfig,
    dataset: Dataset,
    checkpoint_dir: Path,
    stop_flag: StopFlag | None = None,
    test_negatives: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    emit: Callable[[str], None] = print,
) -> TrainingResult:
    """Fit, select on validation, checkpoint every epoch, evaluate the test split once.

    Args:
        config: The typed configuration.
        dataset: Encoded interactions and splits.
        checkpoint_dir: Where checkpoints are read from and written to.
        stop_flag: Set by a SIGTERM handler; training stops after the current batch.
        test_negatives: ``(users, held_out, negatives)`` from the ``test_negatives``
            channel, for the exact sampled test protocol.
        emit: Where metric lines go (stdout, where SageMaker reads them).
    """
    stop_flag = StopFlag() if stop_flag is None else stop_flag  # an unset flag is falsy
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    timings = {"pretraining": 0.0, "training": 0.0, "validation": 0.0, "test": 0.0}

    model = build_model(config, dataset)
    _compile(model, config, optimizer="sgd" if config.pretrain else None)
    checkpoint_path = checkpoint_dir / CHECKPOINT_FILE
    compatibility = _compatibility(config, dataset)
    restored = _load_checkpoint(checkpoint_path, model, compatibility)

    history: list[dict[str, float]] = []
    best_value: float | None = None
    best_epoch, epochs_without_gain, start_epoch = 0, 0, 1
    best_weights: list[Any] = []
    early_stopped = False
    if restored is not None:
        state, best_weights = restored
        history, best_epoch = state["history"], state["best_epoch"]
        best_value, epochs_without_gain = state["best_value"], state["epochs_without_gain"]
        early_stopped = state.get("early_stopped", False)
        start_epoch = state["epoch"] + 1
        rng.bit_generator.state = state["rng_state"]
        logger.info("resuming from checkpoint %s after epoch %d", checkpoint_path, state["epoch"])
        emit(f"resuming from checkpoint after epoch {state['epoch']}")
    elif config.pretrain:
        started = time.perf_counter()
        towers = _pretrain(config, dataset, rng, stop_flag)
        timings["pretraining"] = time.perf_counter() - started
        if towers is None:
            return TrainingResult(model=model, timings=timings, stopped=True)
        model.load_pretrained(*towers)

    scorer = Scorer(model, dataset.num_items)
    validation_task = None if config.feedback == "explicit" else _validation_task(config, dataset)
    selection = _selection_metric(config)

    def checkpoint(epoch: int) -> None:
        state = {
            "compatibility": compatibility,
            "epoch": epoch,
            "history": history,
            "best_epoch": best_epoch,
            "best_value": best_value,
            "epochs_without_gain": epochs_without_gain,
            "early_stopped": early_stopped,
            "rng_state": rng.bit_generator.state,
        }
        save_checkpoint(checkpoint_path, model, state, best_weights)

    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.epochs + 1):
        if early_stopped:
            break
        rng_before = rng.bit_generator.state
        started = time.perf_counter()
        # Derived from the epoch number, so a resumed job continues the same schedule.
        model.optimizer.learning_rate.assign(
            config.learning_rate * config.learning_rate_decay ** (epoch - 1)
        )
        loss = _fit_one_epoch(
            model, _epoch_examples(config, dataset, rng), config.batch_size, stop_flag
        )
        fitted = time.perf_counter()
        timings["training"] += fitted - started
        if stop_flag:
            # The epoch is incomplete: record the previous one, so it is redone on resume.
            rng.bit_generator.state = rng_before
            checkpoint(epoch - 1)
            emit(
                f"stopped by SIGTERM during epoch {epoch}; checkpoint saved after epoch {epoch - 1}"
            )
            return TrainingResult(model=model, history=history, timings=timings, stopped=True)
        validation = _validate(config, scorer, dataset, validation_task)
        timings["validation"] += time.perf_counter() - fitted
        record = {"epoch": epoch, "train_loss": loss, **validation}
        record["epoch_seconds"] = time.perf_counter() - started
        history.append(record)
        emit(
            format_metric_line(
                f"epoch={epoch}",
                {
                    "train_loss": loss,
                    **_log_keys(config, validation, "val"),
                    "epoch_seconds": record["epoch_seconds"],
                },
            )
        )
        if _is_better(config, validation[selection], best_value):
            best_value, best_epoch, epochs_without_gain = validation[selection], epoch, 0
            best_weights = [np.array(w) for w in model.get_weights()]
        else:
            epochs_without_gain += 1
            if (
                config.early_stopping_patience
                and epochs_without_gain >= config.early_stopping_patience
            ):
                early_stopped = True
                logger.info(
                    "early stopping after epoch %d: val %s has not improved for %d epochs "
                    "(best %.6f at epoch %d)",
                    epoch,
                    selection,
                    epochs_without_gain,
                    best_value,
                    best_epoch,
                )
        checkpoint(epoch)
        if stop_flag:
            emit(f"stopped by SIGTERM after epoch {epoch}; checkpoint saved")
            return TrainingResult(model=model, history=history, timings=timings, stopped=True)

    if best_weights:
        model.set_weights(best_weights)
    best = next((r for r in history if r["epoch"] == best_epoch), {})
    best_validation = {
        k: v for k, v in best.items() if k not in ("epoch", "train_loss", "epoch_seconds")
    }
    started = time.perf_counter()
    test = evaluate_test(config, scorer, dataset, test_negatives)
    timings["test"] = time.perf_counter() - started
    emit(
        format_metric_line(
            "final",
            {
                "best_epoch": best_epoch,
                **_log_keys(config, best_validation, "val"),
                **_log_keys(
                    config, {k: v for k, v in test.items() if not k.startswith("full_")}, "test"
                ),
                **_log_keys(
                    config,
                    {k: v for k, v in test.items() if k.startswith("full_")},
                    "test",
                ),
            },
        )
    )
    return TrainingResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        validation=best_validation,
        test=test,
        timings=timings,
        resumed_from_epoch=start_epoch - 1,
        early_stopped=early_stopped,
    )
