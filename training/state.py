"""The state of a training run between epochs, which saves and loads itself.

A checkpoint holds what an uninterrupted run would have at the end of an
epoch: the model's weights and optimizer variables (step count and moments
included), the best weights so far, the history and the early-stopping bookkeeping (the
negative sampler's stream is derived from the epoch number, so it needs no
state). It is written atomically after every epoch, by the chief alone in a
multi-worker job.
A SIGTERM in the middle of an epoch writes nothing: the last end-of-epoch
checkpoint already describes exactly where a resumed job must start, so the
resumed run repeats no step and skips none (its weights match an uninterrupted
run's to float tolerance).

A checkpoint is only resumed by a job that agrees with it on everything that
shapes the run (``compatibility``: every hyperparameter but the epoch budget, and
the data's size); its file name is keyed by that, so runs of other settings
sharing a checkpoint location write their own files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "ncf-checkpoint-"


def checkpoint_file(compatibility: dict[str, Any]) -> str:
    """The checkpoint's file name: keyed by everything a resume must agree on.

    Runs with other settings (parallel trials of a SageMaker tuning job sharing one
    checkpoint location, say) write other files, so they never overwrite or resume
    each other's, while a restarted Spot job finds its own.
    """
    digest = hashlib.sha256(json.dumps(compatibility, sort_keys=True, default=str).encode())
    return f"{CHECKPOINT_PREFIX}{digest.hexdigest()[:16]}.npz"


@dataclass
class TrainingState:
    """Where a run stands after its last completed epoch.

    Attributes:
        epoch: The last completed epoch (0 before the first).
        history: One record per completed epoch (``epoch``, ``train_loss``,
            validation metrics, ``epoch_seconds``).
        best_epoch: The epoch with the best selection metric so far (0: none).
        best_value: That metric's value.
        best_weights: The model's weights at ``best_epoch``.
        epochs_without_gain: Epochs since ``best_epoch``.
        early_stopped: Whether patience ran out.
    """

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float | None = None
    best_weights: list[np.ndarray] = field(default_factory=list)
    epochs_without_gain: int = 0
    early_stopped: bool = False

    def record(
        self,
        record: dict[str, float],
        value: float,
        is_better: Callable[[float, float | None], bool],
        weights: Callable[[], list[np.ndarray]],
        patience: int,
        eligible: bool = True,
    ) -> None:
        """Add one completed epoch; keep its weights if ``value`` is the best so far.

        Args:
            record: The epoch's history record (its ``epoch`` key is the epoch number).
            value: The epoch's selection metric.
            is_better: ``is_better(value, best)`` of the objective.
            weights: Returns the model's current weights (called only on improvement).
            patience: Epochs without improvement before early stopping (0: never).
            eligible: Whether the epoch meets the selection constraints
                (``validation_constraint``); an ineligible epoch is never the best,
                however good ``value``, and counts as an epoch without improvement.
        """
        epoch = int(record["epoch"])
        self.epoch = epoch
        self.history.append(record)
        if eligible and is_better(value, self.best_value):
            self.best_value, self.best_epoch, self.epochs_without_gain = value, epoch, 0
            self.best_weights = [np.array(w) for w in weights()]
        else:
            self.epochs_without_gain += 1
            self.early_stopped = bool(patience) and self.epochs_without_gain >= patience

    @property
    def best_record(self) -> dict[str, float]:
        """The history record of ``best_epoch`` (empty if none)."""
        return next((r for r in self.history if r["epoch"] == self.best_epoch), {})

    def _json(self, compatibility: dict[str, Any]) -> str:
        return json.dumps(
            {
                "compatibility": compatibility,
                "epoch": self.epoch,
                "history": self.history,
                "best_epoch": self.best_epoch,
                "best_value": self.best_value,
                "epochs_without_gain": self.epochs_without_gain,
                "early_stopped": self.early_stopped,
            }
        )

    def save(self, path: Path, model: keras.Model, compatibility: dict[str, Any]) -> None:
        """Write this state with ``model``'s weights and optimizer variables, atomically."""
        arrays: dict[str, Any] = {"state": np.array(self._json(compatibility))}
        for index, value in enumerate(model.get_weights()):
            arrays[f"weight_{index}"] = np.asarray(value)
        for index, variable in enumerate(model.optimizer.variables):
            arrays[f"optimizer_{index}"] = keras.ops.convert_to_numpy(variable)
        for index, value in enumerate(self.best_weights):
            arrays[f"best_{index}"] = np.asarray(value)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(temporary, **arrays)
        os.replace(temporary, path)

    @classmethod
    def load(
        cls, path: Path, model: keras.Model, compatibility: dict[str, Any]
    ) -> TrainingState | None:
        """Restore ``model`` and its optimizer from ``path`` and return the state.

        Returns ``None`` (and logs why) when there is no checkpoint, it is
        unreadable, or it was written for a different run.
        """
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                saved = json.loads(str(stored["state"]))
                arrays = {
                    prefix: [stored[f"{prefix}_{i}"] for i in range(_count(stored.files, prefix))]
                    for prefix in ("weight", "optimizer", "best")
                }
        except Exception as error:  # a corrupt file must not kill the job: start over
            logger.warning("ignoring unreadable checkpoint %s: %r", path, error)
            return None
        if saved.get("compatibility") != compatibility:
            logger.warning(
                "ignoring checkpoint %s: written for %s, this job is %s",
                path,
                saved.get("compatibility"),
                compatibility,
            )
            return None
        if len(arrays["optimizer"]) != len(model.optimizer.variables):
            logger.warning("ignoring checkpoint %s: its optimizer state does not match", path)
            return None
        model.set_weights(arrays["weight"])
        for variable, value in zip(model.optimizer.variables, arrays["optimizer"], strict=True):
            variable.assign(value)
        return cls(
            epoch=saved["epoch"],
            history=saved["history"],
            best_epoch=saved["best_epoch"],
            best_value=saved["best_value"],
            best_weights=arrays["best"],
            epochs_without_gain=saved["epochs_without_gain"],
            early_stopped=saved["early_stopped"],
        )


def _count(names: list[str], prefix: str) -> int:
    return sum(name.startswith(f"{prefix}_") for name in names)
