"""The ``blend`` family: EASE and iALS fitted side by side, their scores mixed per user.

EASE (``training.families.ease``) models item-to-item co-occurrence exactly and
iALS (``training.families.ials``) a low-rank user taste; their errors differ, so
the mix ranks better than either part on both datasets of BENCHMARKS.md
("Quality"). The two score rows live on unrelated scales, so each user's row of
each model is first standardised over the whole catalog
(``ncf_contract.ranking.standardise_rows``), then mixed::

    score = blend_ease_weight * z(EASE row) + (1 - blend_ease_weight) * z(iALS row)

Both parts use their own families' hyperparameters (``ease_l2``, ``ials_*``);
``blend_ease_weight`` is searched with them. EASE is solved first; the iALS
part then runs iteration by iteration and the *blend* is scored on validation
after each (metric lines and the pruner see the blend's figures), so the
iteration count is chosen for the blend itself, and a refit runs that many.

Serving loads both parts from one model directory (``ncf_contract.model_dir``):
the item-item matrix, the iALS factors and ``blend_weights``; a request's
``history`` is exact for the EASE part and folded into a user vector for the
iALS part (``inference.scoring``).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ncf_contract.families import BLEND
from ncf_contract.ranking import pairs_from_rows, standardise_rows
from training.config import TrainingConfig
from training.families.base import FitContext, FitResult, FittedModel
from training.families.ease import EaseScorer, check_catalog_size, ease_weights
from training.families.ials import DotProductScorer, FittedIals, IalsFamily
from training.objectives import Objective

logger = logging.getLogger(__name__)


class BlendScorer:
    """``w * z(EASE row) + (1 - w) * z(iALS row)`` per user, for evaluation."""

    def __init__(self, ease: EaseScorer, ials: DotProductScorer, ease_weight: float) -> None:
        self.ease = ease
        self.ials = ials
        self.ease_weight = float(ease_weight)
        self.num_items = ease.num_items

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]`` blended scores."""
        mixed = self.ease_weight * standardise_rows(self.ease.score_all_items(users))
        mixed += (1.0 - self.ease_weight) * standardise_rows(self.ials.score_all_items(users))
        return mixed

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of aligned ``(users[j], items[j])`` (any equal shapes), same shape."""
        return pairs_from_rows(self.score_all_items, users, items)


class FittedBlend(FittedModel):
    """An EASE item-item matrix, iALS factors and the EASE share of the mix."""

    model_type = BLEND
    output_activation = "linear"

    def __init__(self, ease: EaseScorer, ials: FittedIals, ease_weight: float) -> None:
        self.ials = ials
        self._scorer = BlendScorer(ease, ials.scorer, ease_weight)

    @property
    def scorer(self) -> BlendScorer:
        """The blended scores."""
        return self._scorer

    def model_weights(self) -> dict[str, np.ndarray]:
        """``ease_item_item``, the iALS part's weights and ``blend_weights``."""
        share = self._scorer.ease_weight
        return {
            "ease_item_item": self._scorer.ease.item_item,
            **self.ials.model_weights(),
            "blend_weights": np.array([share, 1.0 - share], dtype=np.float32),
        }


class _IalsBesideEase(IalsFamily):
    """iALS whose every iteration is judged as a blend with a fitted EASE."""

    def __init__(self, ease: EaseScorer, ease_weight: float) -> None:
        self.ease = ease
        self.ease_weight = ease_weight

    def fitted(self, user_factors: np.ndarray, item_factors: np.ndarray) -> FittedModel:
        """The blend of this iteration's factors with the EASE part."""
        return FittedBlend(self.ease, FittedIals(user_factors, item_factors), self.ease_weight)


class BlendFamily:
    """EASE in closed form, then iALS iteration by iteration, selected on the blend."""

    def fit(self, config: TrainingConfig, objective: Objective, context: FitContext) -> FitResult:
        """Check the catalog size, solve EASE, fit iALS judged as the blend."""
        dataset = objective.dataset
        check_catalog_size(dataset.num_items, config.ease_max_items, BLEND)
        if context.stop_flag:
            return FitResult(model=None, stopped=True)
        started = time.perf_counter()
        item_item, _ = ease_weights(dataset.train_seen.matrix, config.ease_l2)
        ease_seconds = time.perf_counter() - started
        logger.info(
            "blend: EASE part (l2 %g) solved in %.1f s; iALS part next (EASE share %.2f)",
            config.ease_l2,
            ease_seconds,
            config.blend_ease_weight,
        )
        ease = EaseScorer(item_item, dataset.train_seen)
        fit = _IalsBesideEase(ease, config.blend_ease_weight).fit(config, objective, context)
        fit.timings["training"] = fit.timings.get("training", 0.0) + ease_seconds
        return fit
