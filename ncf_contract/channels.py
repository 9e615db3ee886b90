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

#: The S3 distribution type that hands each instance a share of a channel's files.
SHARDED_BY_S3_KEY = "ShardedByS3Key"
#: Why a train channel sharded by S3 key is refused on several instances: the training
#: job's FailureReason and the launcher's error, word for word.
SHARDED_TRAIN_REFUSED = (
    "the train channel is ShardedByS3Key, but on several instances each one needs the whole "
    "train channel: every instance builds the same user and item vocabularies from all of it "
    "and training shards the users across instances itself (a chief that trains alone needs "
    "all of it too); use S3DistributionType FullyReplicated "
    "(ncf train --s3-distribution FullyReplicated, the default)"
)
