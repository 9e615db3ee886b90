"""The hosts of a job and how they share the work: TF_CONFIG, user shards, learning rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.cluster import (
    Cluster,
    check_train_replicated,
    lost_hosts,
    scaled_learning_rate,
    tf_config,
    user_shards,
)
from training.config import TrainingConfig
from training.errors import ConfigError, WorkerLostError


def test_tf_config_follows_the_sagemaker_toolkit_convention() -> None:
    cluster = Cluster.of(["algo-3", "algo-1", "algo-2"], "algo-2")
    assert tf_config(cluster) == {
        "cluster": {"worker": ["algo-1:8890", "algo-2:8890", "algo-3:8890"]},
        "task": {"type": "worker", "index": 1},
    }
    assert cluster.chief == "algo-1" and not cluster.is_chief and cluster.multi_host


def test_a_host_outside_the_cluster_is_refused() -> None:
    with pytest.raises(ConfigError, match="current_host 'algo-9' is not among"):
        Cluster.of(["algo-1", "algo-2"], "algo-9")


def test_user_shards_are_disjoint_complete_and_balanced() -> None:
    rng = np.random.default_rng(0)
    # Heavy-tailed activity, as in real logs: a few users with many interactions.
    counts = np.minimum(rng.zipf(1.5, size=5000), 500)
    user_index = np.repeat(np.arange(5000), counts)
    shards = user_shards(user_index, 5000, 4, seed=42)
    assert shards.shape == (5000,) and set(np.unique(shards)) == {0, 1, 2, 3}
    sizes = np.bincount(shards[user_index], minlength=4)
    assert sizes.sum() == len(user_index)
    # Within one user's interactions of an even split.
    assert sizes.max() - sizes.min() <= counts.max()
    # Every host computes the same assignment from the same data and seed.
    np.testing.assert_array_equal(shards, user_shards(user_index, 5000, 4, seed=42))


def test_learning_rate_follows_the_global_batch() -> None:
    assert scaled_learning_rate(0.003, "adam", "auto", 4) == pytest.approx(0.006)
    assert scaled_learning_rate(0.01, "sgd", "auto", 4) == pytest.approx(0.04)
    assert scaled_learning_rate(0.01, "adam", "linear", 2) == pytest.approx(0.02)
    assert scaled_learning_rate(0.01, "sgd", "sqrt", 2) == pytest.approx(0.01 * math.sqrt(2))
    assert scaled_learning_rate(0.01, "adam", "none", 8) == 0.01
    assert scaled_learning_rate(0.01, "adam", "auto", 1) == 0.01


def test_distribution_hyperparameters_are_typed() -> None:
    config = TrainingConfig.from_hyperparameters(
        {"distribution": "multi_worker_mirrored", "learning_rate_scaling": "linear"}
    )
    assert config.distribution == "multi_worker_mirrored"
    with pytest.raises(ConfigError, match="distribution='ps'"):
        TrainingConfig.from_hyperparameters({"distribution": "ps"})


def test_a_train_channel_sharded_by_s3_key_is_refused_with_what_to_pass() -> None:
    check_train_replicated({"train": {"S3DistributionType": "FullyReplicated"}})
    with pytest.raises(ConfigError, match="--s3-distribution FullyReplicated"):
        check_train_replicated({"train": {"S3DistributionType": "ShardedByS3Key"}})


def test_a_collective_error_names_the_lost_host() -> None:
    cluster = Cluster.of(["algo-1", "algo-2", "algo-3"], "algo-1")
    message = (
        "Collective ops is aborted by: Error reported from /job:worker/task:0: The following "
        "tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:2\n"
    )
    assert lost_hosts(message, cluster) == ["algo-3"]
    error = WorkerLostError(["algo-3"], "algo-1", "epoch 2")
    assert str(error).startswith("host algo-3 stopped answering during epoch 2")
