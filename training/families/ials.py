"""The ``ials`` family: implicit alternating least squares with the ``implicit`` library.

Hu, Koren & Volinsky (2008): every (user, item) cell is a target, 1 where the
user interacted and 0 elsewhere, weighted by a confidence of ``1 + ials_alpha *
count`` for an interaction and 1 for the rest; user and item factors are solved
for in turn, each half-step an exact ridge regression (the conjugate-gradient
solver of ``implicit``). Rendle et al. (2021, "Revisiting the performance of
iALS") show that a well-regularised iALS is a strong baseline on these
benchmarks.

The fit runs one ALS iteration at a time (``implicit`` keeps its factors between
calls), scores the validation split after each, emits a metric line and keeps
the best iteration's factors (the last one's in a refit, which runs the
selected number of iterations). A SIGTERM ends the fit between iterations with
nothing to publish; a fit takes seconds, so there is no checkpoint and the next
job starts over.

``ials_members`` = K fits (seeds ``seed`` .. ``seed + K - 1``) run in step, one
iteration each in turn, and every iteration is judged as their mean score: an
average of ALS solutions from different random starts ranks better than one of
them (a bagging of the non-convex fit; BENCHMARKS.md, issue 11) and depends less
on the seed. The mean is itself a dot product (``side_by_side``): user factors
``[u_1 .. u_K] / K`` against item factors ``[v_1 .. v_K]``.

Export: a dot-product model in the GMF tower's weights (``ncf_contract.model_dir``):
``gmf_user_embedding`` and ``gmf_item_embedding`` are the factors, the output
layer is the identity (``output_kernel`` ones, ``output_bias`` 0, linear), so
the existing NumPy scorer serves ``score = user · item`` exactly.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from ncf_contract.families import IALS
from ncf_contract.metric_lines import format_metric_line
from ncf_contract.ranking import unit_rows
from training.config import TrainingConfig
from training.dataset import Dataset
from training.families.base import FitContext, FitResult, FittedModel, validation_of
from training.objectives import Objective

logger = logging.getLogger(__name__)

#: Pairs scored per block in ``score_pairs`` (bounds the gathered ``[n, d]`` factors).
SCORE_CHUNK = 1 << 16


class DotProductScorer:
    """Scores ``user_vectors[u] · item_vectors[i]`` (float32), for evaluation."""

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        self.user_vectors = np.ascontiguousarray(user_vectors, dtype=np.float32)
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.num_items = len(self.item_vectors)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of aligned ``(users[j], items[j])`` (any equal shapes), same shape."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        flat_users = users.reshape(-1).astype(np.intp)
        flat_items = items.reshape(-1).astype(np.intp)
        out = np.empty(len(flat_users), dtype=np.float32)
        for start in range(0, len(out), SCORE_CHUNK):
            block = slice(start, start + SCORE_CHUNK)
            out[block] = np.einsum(
                "nd,nd->n",
                self.user_vectors[flat_users[block]],
                self.item_vectors[flat_items[block]],
            )
        return out.reshape(users.shape)

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]`` scores of every item for each user."""
        return self.user_vectors[np.asarray(users, dtype=np.intp)] @ self.item_vectors.T


class FittedIals(FittedModel):
    """ALS factors, exported as a dot-product GMF model."""

    model_type = IALS
    output_activation = "linear"

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray) -> None:
        self._scorer = DotProductScorer(user_factors, item_factors)

    @property
    def scorer(self) -> DotProductScorer:
        """``user · item``."""
        return self._scorer

    def model_weights(self) -> dict[str, np.ndarray]:
        """The factors as the GMF tower, with an identity output layer."""
        factors = self._scorer.user_vectors.shape[1]
        return {
            "gmf_user_embedding": self._scorer.user_vectors,
            "gmf_item_embedding": self._scorer.item_vectors,
            "output_kernel": np.ones((factors, 1), dtype=np.float32),
            "output_bias": np.zeros(1, dtype=np.float32),
        }


def _append_loss(losses: list[float], _iteration: int, _seconds: float, loss: float) -> None:
    """``implicit``'s per-iteration callback: keep the training loss."""
    losses.append(float(loss))


def side_by_side(members: list[AlternatingLeastSquares]) -> tuple[np.ndarray, np.ndarray]:
    """The members' factors as one dot-product model: ``mean_k(user_k · item_k)``.

    User factors ``[u_1 .. u_K] / K`` and item factors ``[v_1 .. v_K]`` (float32), so
    ``user · item`` is the mean of the members' scores and a history's fold-in can solve
    each member's block on its own (``inference.scoring.FoldIn``).
    """
    users = np.concatenate([np.asarray(model.user_factors) for model in members], axis=1)
    items = np.concatenate([np.asarray(model.item_factors) for model in members], axis=1)
    users /= len(members)
    return users.astype(np.float32, copy=False), items.astype(np.float32, copy=False)


def confidence_matrix(dataset: Dataset, alpha: float) -> sp.csr_matrix:
    """``[num_users, num_items]`` CSR of ``1 + alpha * count`` over the train interactions."""
    train = dataset.train
    counts = sp.csr_matrix(
        (
            np.ones(len(train), dtype=np.float32),
            (train.user_index.astype(np.int64), train.item_index.astype(np.int64)),
        ),
        shape=(dataset.num_users, dataset.num_items),
    )
    counts.sum_duplicates()
    counts.data = (1.0 + alpha * counts.data).astype(np.float32)
    return counts


class IalsFamily:
    """Implicit ALS (``implicit.cpu.als``), selected by iteration on validation."""

    def fitted(self, user_factors: np.ndarray, item_factors: np.ndarray) -> FittedModel:
        """The model one iteration's factors make (``training.families.blend`` adds EASE)."""
        return FittedIals(user_factors, item_factors)

    def fit(self, config: TrainingConfig, objective: Objective, context: FitContext) -> FitResult:
        """Fit iteration by iteration; see the module docstring."""
        timings = {"training": 0.0, "validation": 0.0}
        # The library's confidence is the matrix value itself: alpha is applied here
        # (1 + alpha * count), so the library's own alpha stays 1.
        confidence = confidence_matrix(objective.dataset, config.ials_alpha)
        # implicit asks for single-threaded BLAS (it warns otherwise): its own threads do the
        # parallel work.
        blas = threadpool_limits(1, "blas")
        members = [
            AlternatingLeastSquares(
                factors=config.ials_factors,
                regularization=config.ials_regularization,
                alpha=1.0,
                iterations=1,
                calculate_training_loss=True,
                random_state=(config.seed + member) % 2**32,
            )
            for member in range(config.ials_members)
        ]
        blas.restore_original_limits()
        losses: list[float] = []
        history: list[dict[str, float]] = []
        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        for iteration in range(1, config.ials_iterations + 1):
            if context.stop_flag:
                context.emit(f"stopped by SIGTERM before ALS iteration {iteration}")
                return FitResult(model=None, history=history, timings=timings, stopped=True)
            started = time.perf_counter()
            member_losses: list[float] = []
            with threadpool_limits(1, "blas"):
                for model in members:
                    model.fit(
                        confidence,
                        show_progress=False,
                        callback=partial(_append_loss, member_losses),
                    )
            losses.append(float(np.mean(member_losses)))
            fitted_at = time.perf_counter()
            timings["training"] += fitted_at - started
            user_factors, item_factors = side_by_side(members)
            validation = objective.validation_metrics(
                self.fitted(user_factors, item_factors).scorer,
                partial(unit_rows, item_factors),
            )
            timings["validation"] += time.perf_counter() - fitted_at
            record = {
                "epoch": iteration,
                "train_loss": losses[-1],
                **validation,
                "epoch_seconds": time.perf_counter() - started,
            }
            history.append(record)
            context.emit(
                format_metric_line(
                    f"epoch={iteration}",
                    {
                        "train_loss": record["train_loss"],
                        **objective.log_keys(validation, "val"),
                        "epoch_seconds": record["epoch_seconds"],
                    },
                )
            )
            if context.report is not None:  # a search may prune the trial here
                context.report(iteration, validation)
            value = validation[objective.selection_metric]
            eligible = objective.meets_constraints(validation)  # validation_constraint
            # A refit (select_best off: its validation rows are in train) keeps the last.
            better = best is None or not context.select_best or objective.is_better(value, best[0])
            if eligible and better:
                best = (value, iteration, user_factors.copy(), item_factors.copy())
        if best is None:  # no iteration met validation_constraint: the trainer reports it
            return FitResult(
                model=self.fitted(user_factors, item_factors), history=history, timings=timings
            )
        _, best_iteration, user_factors, item_factors = best
        logger.info("ALS: best validation at iteration %d", best_iteration)
        return FitResult(
            model=self.fitted(user_factors, item_factors),
            history=history,
            best_epoch=best_iteration,
            validation=validation_of(history[best_iteration - 1]),
            timings=timings,
        )
