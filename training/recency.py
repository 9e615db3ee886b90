"""Time: recency weights of interactions and the ``trending`` ranking, from train timestamps.

Timestamps are unix seconds (``training.data`` turns dates into them), so both
hyperparameters are in days:

- ``recency_half_life`` = h weights each training interaction's loss by
  ``0.5 ** (age / h)``, ``age`` being the days between the interaction and the
  latest interaction of ``train`` (as Amazon Personalize's recency weighting
  does): the latest interactions weigh 1, those ``h`` days older 0.5. For
  implicit feedback, the negatives drawn for a positive carry its weight, so
  each user's balance of positives and negatives is kept. Keras applies the
  weights as ``sample_weight`` (the loss of a batch is the weighted mean).
- ``trending_window`` = w counts each item's ``train`` interactions within the
  last ``w`` days: the ``trending`` fallback of serving, beside all-time popularity.
"""

from __future__ import annotations

import numpy as np

from training.dataset import Interactions
from training.errors import DataError

SECONDS_PER_DAY = 86_400.0


def _ages_in_days(train: Interactions, hyperparameter: str) -> np.ndarray:
    if train.timestamp is None:
        raise DataError(
            f"{hyperparameter} needs timestamps, but the train channel has no timestamp column; "
            "set timestamp_column to it, or unset the hyperparameter"
        )
    stamps = train.timestamp.astype(np.float64)
    return (stamps.max() - stamps) / SECONDS_PER_DAY


def recency_weights(train: Interactions, half_life_days: float) -> np.ndarray:
    """``[len(train)]`` float32 weights ``0.5 ** (age_days / half_life_days)``.

    Raises:
        DataError: ``train`` has no timestamps.
    """
    ages = _ages_in_days(train, "recency_half_life")
    return np.power(0.5, ages / half_life_days).astype(np.float32)


def trending_counts(train: Interactions, num_items: int, window_days: float) -> np.ndarray:
    """``[num_items]`` int64 interactions within the last ``window_days`` of ``train``.

    Raises:
        DataError: ``train`` has no timestamps.
    """
    recent = _ages_in_days(train, "trending_window") <= window_days
    return np.bincount(train.item_index[recent], minlength=num_items).astype(np.int64)
