"""The training job's data channels (``/opt/ml/input/data/<channel>``)."""

from __future__ import annotations

TRAIN = "train"
VALIDATION = "validation"
TEST = "test"
TEST_NEGATIVES = "test_negatives"
#: Attribute tables: an id column plus attribute columns (``training.attributes``).
ITEMS = "items"
USERS = "users"

#: Every channel training reads; only ``train`` is required.
CHANNELS: tuple[str, ...] = (TRAIN, VALIDATION, TEST, TEST_NEGATIVES, ITEMS, USERS)
#: Channels of interaction rows (``test_negatives`` has its own format).
INTERACTION_CHANNELS: tuple[str, ...] = (TRAIN, VALIDATION, TEST)
#: Channels of attribute rows, one per item / user.
ATTRIBUTE_CHANNELS: tuple[str, ...] = (ITEMS, USERS)
