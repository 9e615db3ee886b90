"""The training job's data channels (``/opt/ml/input/data/<channel>``)."""

from __future__ import annotations

TRAIN = "train"
VALIDATION = "validation"
TEST = "test"
TEST_NEGATIVES = "test_negatives"

#: Every channel training reads; only ``train`` is required.
CHANNELS: tuple[str, ...] = (TRAIN, VALIDATION, TEST, TEST_NEGATIVES)
#: Channels of interaction rows (``test_negatives`` has its own format).
INTERACTION_CHANNELS: tuple[str, ...] = (TRAIN, VALIDATION, TEST)
