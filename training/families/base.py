"""The seam every model family plugs into: fit on a dataset, then score and export.

A family is "fit on a dataset, write a model directory". ``fit`` returns a
``FitResult`` whose ``FittedModel`` can score (for validation and test metrics)
and hand over the arrays of the model directory (``ncf_contract.model_dir``);
the trainer, the report and the export never need to know how it was fitted —
by gradient descent over epochs (the NCF families), in closed form, or by
alternating least squares.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from training.config import TrainingConfig
from training.objectives import Objective, Scorer
from training.signals import StopFlag

if TYPE_CHECKING:  # TensorFlow loads only when a family that uses it is fitted
    from training.distributed import Distribution


class FittedModel(ABC):
    """A trained model: scores for evaluation, arrays for the model directory."""

    #: The ``model_type`` written to ``metadata.json``.
    model_type: str
    #: ``sigmoid`` or ``linear``.
    output_activation: str

    @property
    @abstractmethod
    def scorer(self) -> Scorer:
        """Batched scoring for evaluation."""

    @abstractmethod
    def model_weights(self) -> dict[str, np.ndarray]:
        """The arrays of ``weights.npz``, named as ``ncf_contract.model_dir`` documents."""

    @property
    def num_mlp_layers(self) -> int:
        """Hidden layers of an MLP tower (0 without one)."""
        return 0

    def write_extras(self, directory: Path) -> None:  # noqa: B027 (optional hook)
        """Write family-specific files into a model directory (nothing by default)."""


@dataclass(frozen=True)
class FitContext:
    """What a fit needs from the job around it.

    Attributes:
        checkpoint_dir: Where checkpoints are read from and written to.
        stop_flag: Set by SIGTERM; a fit stops at the next safe point.
        emit: Where metric lines go (stdout, where SageMaker reads them).
        report: Called with ``(epoch, validation metrics)`` after each epoch of a fit
            that has epochs; it may raise (a search prunes a poor trial this way).
        select_best: Keep the epoch with the best validation metric (``True``), or the
            last epoch (``False``: a refit whose validation data is part of training).
        distribution: The strategy a family that distributes trains under
            (``training.distributed``); ``None``: one process, no strategy.
    """

    checkpoint_dir: Path
    stop_flag: StopFlag = field(default_factory=StopFlag)
    emit: Callable[[str], None] = print
    report: Callable[[int, Mapping[str, float]], None] | None = None
    select_best: bool = True
    distribution: Distribution | None = None

    @property
    def is_chief(self) -> bool:
        """Whether this process writes checkpoints and emits metric lines."""
        return self.distribution is None or self.distribution.is_chief


@dataclass
class FitResult:
    """What a fit produced.

    Attributes:
        model: The fitted model (its best validation state); ``None`` if stopped.
        history: One record per epoch or iteration (``epoch``, ``train_loss``,
            validation metrics, ``epoch_seconds``).
        best_epoch: The epoch ``model`` comes from (1-based; 0 if none).
        validation: The validation metrics of ``model``.
        timings: Seconds spent per phase (``training``, ``validation``, ...).
        resumed_from_epoch: The checkpoint epoch this fit resumed after (0 if none).
        stopped: A SIGTERM stopped the fit; nothing is to be published.
        early_stopped: Early stopping ended the fit.
    """

    model: FittedModel | None
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    validation: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    resumed_from_epoch: int = 0
    stopped: bool = False
    early_stopped: bool = False


#: Keys of a history record that are not validation metrics.
RECORD_KEYS = ("epoch", "train_loss", "epoch_seconds")


def validation_of(record: dict[str, float]) -> dict[str, float]:
    """The validation metrics of one history record."""
    return {k: v for k, v in record.items() if k not in RECORD_KEYS}


class ModelFamily(Protocol):
    """Fits one kind of model."""

    def fit(self, config: TrainingConfig, objective: Objective, context: FitContext) -> FitResult:
        """Fit on ``objective.dataset``, select on its validation split, honour ``context``."""
        ...
