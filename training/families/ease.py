"""The ``ease`` family: the linear item-item auto-encoder of Steck (2019), in closed form.

"Embarrassingly Shallow Autoencoders for Sparse Data" learns an item-item matrix
``B`` that reconstructs each user's interaction row ``x`` as ``x @ B``, under
L2 ``λ`` (``ease_l2``) and with a zero diagonal (an item may not predict
itself)::

    min_B ||X - X B||² + λ ||B||²   subject to diag(B) = 0
    P = (XᵀX + λI)⁻¹
    B = I - P / diag(P)          (column j divided by P_jj), so B_ij = -P_ij / P_jj

``X`` is the binary users x items matrix of the train split. Fitting is one
Gram matrix and one inversion of an ``items x items`` float64 matrix: seconds
for a few thousand items, but the memory grows with the square of the catalog,
so catalogs above ``ease_max_items`` are refused before anything is allocated,
with the memory they would need and the families to use instead.

A user's scores are their history's indicator row times ``B``: the train split
while the job evaluates, ``seen.npz`` (or a request's ``history``) when served,
see ``ncf_contract.model_dir``. The training loss reported is the objective per
user, which at the optimum is ``(Σ_j 1 / P_jj - λ · items) / users``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.linalg.lapack
import scipy.sparse as sp

from ncf_contract.families import EASE
from ncf_contract.metric_lines import format_metric_line
from ncf_contract.ranking import pairs_from_rows
from ncf_contract.seen import SeenItems
from training.config import TrainingConfig
from training.errors import ConfigError
from training.families.base import FitContext, FitResult, FittedModel
from training.objectives import Objective

logger = logging.getLogger(__name__)

#: Bytes per items x items cell while fitting: the float64 Gram matrix inverted in place,
#: the float32 weights, and the sparse Gram product it is built from (up to 8 more).
FIT_BYTES_PER_CELL = 20
#: Bytes per items x items cell in each serving worker: the float32 matrix, its unit rows
#: and their transpose (similar items and diversity, ``inference.scoring``).
SERVE_BYTES_PER_CELL = 12


def fit_memory_bytes(num_items: int) -> int:
    """About how much memory fitting EASE on ``num_items`` items needs."""
    return FIT_BYTES_PER_CELL * num_items * num_items


def check_catalog_size(num_items: int, max_items: int, model_type: str = EASE) -> None:
    """Refuse a catalog whose items x items matrices would not fit (``ease``, ``blend``).

    Raises:
        ConfigError: ``num_items`` is above ``max_items``; the message names the limit, the
            memory the fit would need and the families to use instead.
    """
    if num_items <= max_items:
        return
    gib = fit_memory_bytes(num_items) / 2**30
    raise ConfigError(
        f"model_type={model_type} needs an items x items matrix, and this catalog has "
        f"{num_items:,} items, above ease_max_items={max_items:,}: fitting would need about "
        f"{gib:,.1f} GiB of memory (and serving "
        f"{SERVE_BYTES_PER_CELL * num_items**2 / 2**30:,.1f} GiB per worker). "
        "Use model_type=ials or model_type=gmf for a catalog this size, or raise "
        "ease_max_items if the instance has the memory"
    )


def ease_weights(interactions: sp.csr_array, l2: float) -> tuple[np.ndarray, float]:
    """``B`` (float32 ``[items, items]``, zero diagonal) and the objective at the optimum.

    Args:
        interactions: ``[users, items]`` CSR; every stored entry counts as a 1.
        l2: λ.
    """
    binary = sp.csr_array(
        (np.ones(interactions.nnz), interactions.indices, interactions.indptr),
        shape=interactions.shape,
    )
    gram = (binary.T @ binary).toarray(order="C")
    num_items = gram.shape[0]
    gram[np.diag_indices(num_items)] += l2
    precision = _invert_positive_definite(gram)
    diagonal = np.diag(precision).copy()
    objective = float(np.sum(1.0 / diagonal) - l2 * num_items)
    precision /= -diagonal[None, :]
    precision[np.diag_indices(num_items)] = 0.0
    return precision.astype(np.float32), objective


def _invert_positive_definite(matrix: np.ndarray, block: int = 1024) -> np.ndarray:
    """The inverse of a symmetric positive definite C-ordered float64 matrix, in place.

    Cholesky (LAPACK ``potrf`` + ``potri``: about half the work of an LU inverse) on the
    Fortran-ordered transpose, which is the same memory; LAPACK fills one triangle and the
    other is copied over block by block (no index arrays the size of the matrix).

    Raises:
        np.linalg.LinAlgError: The matrix is not positive definite.
    """
    factor, info = scipy.linalg.lapack.dpotrf(matrix.T, lower=False, clean=False, overwrite_a=True)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0 or not np.shares_memory(inverse, matrix):
        raise np.linalg.LinAlgError(f"the regularised Gram matrix is not invertible ({info})")
    size = len(matrix)  # its lower triangle (C order) now holds the inverse
    for start in range(0, size, block):
        stop = min(start + block, size)
        matrix[start:stop, stop:] = matrix[stop:, start:stop].T
        tile = matrix[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        tile[upper] = tile.T[upper]
    return matrix


class EaseScorer:
    """Scores ``history @ B``, for evaluation: ``history`` is a users x items CSR."""

    def __init__(self, item_item: np.ndarray, history: SeenItems) -> None:
        self.item_item = item_item
        self.num_items = len(item_item)
        matrix = history.matrix
        self._history = sp.csr_array(
            (np.ones(matrix.nnz, dtype=np.float32), matrix.indices, matrix.indptr),
            shape=matrix.shape,
        )

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]`` scores of every item for each user."""
        rows = self._history[np.asarray(users, dtype=np.intp)]
        return np.asarray(rows @ self.item_item, dtype=np.float32)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of aligned ``(users[j], items[j])`` (any equal shapes), same shape."""
        return pairs_from_rows(self.score_all_items, users, items)


class FittedEase(FittedModel):
    """The item-item matrix ``B``."""

    model_type = EASE
    output_activation = "linear"

    def __init__(self, item_item: np.ndarray, history: SeenItems) -> None:
        self.item_item = item_item
        self._scorer = EaseScorer(item_item, history)

    @property
    def scorer(self) -> EaseScorer:
        """``train history @ B``."""
        return self._scorer

    def model_weights(self) -> dict[str, np.ndarray]:
        """``ease_item_item``."""
        return {"ease_item_item": self.item_item}


class EaseFamily:
    """EASE in closed form (one fit, so ``best_epoch`` is 1)."""

    def fit(self, config: TrainingConfig, objective: Objective, context: FitContext) -> FitResult:
        """Check the catalog size, solve for ``B``, score the validation split."""
        dataset = objective.dataset
        check_catalog_size(dataset.num_items, config.ease_max_items)
        if context.stop_flag:
            return FitResult(model=None, stopped=True)
        started = time.perf_counter()
        item_item, loss = ease_weights(dataset.train_seen.matrix, config.ease_l2)
        fitted = time.perf_counter()
        if context.stop_flag:
            context.emit("stopped by SIGTERM during the EASE fit; nothing written")
            return FitResult(model=None, timings={"training": fitted - started}, stopped=True)
        model = FittedEase(item_item, dataset.train_seen)
        validation = objective.validation_metrics(model.scorer)
        timings = {"training": fitted - started, "validation": time.perf_counter() - fitted}
        record = {
            "epoch": 1,
            "train_loss": loss / max(1, dataset.num_users),
            **validation,
            "epoch_seconds": time.perf_counter() - started,
        }
        logger.info(
            "ease: %d items, l2 %g, fitted in %.1f s",
            dataset.num_items,
            config.ease_l2,
            timings["training"],
        )
        context.emit(
            format_metric_line(
                "epoch=1",
                {
                    "train_loss": record["train_loss"],
                    **objective.log_keys(validation, "val"),
                    "epoch_seconds": record["epoch_seconds"],
                },
            )
        )
        return FitResult(
            model=model, history=[record], best_epoch=1, validation=validation, timings=timings
        )
