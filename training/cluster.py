"""The hosts of a training job and how they share the work (no TensorFlow here).

A job on ``N`` instances trains data-parallel on TensorFlow's
``MultiWorkerMirroredStrategy`` (see ``training.distributed``). This module holds
the parts that need no TensorFlow, so a bad setting fails in seconds:

- ``Cluster``: the job's hosts, sorted, and this host's place among them; the
  first host is the chief, the only one that writes ``model/``, ``output/data/``
  and checkpoints.
- ``tf_config``: the ``TF_CONFIG`` that ``MultiWorkerMirroredStrategy`` reads,
  built as the SageMaker TensorFlow training toolkit builds it for that strategy
  (``_build_tf_config_for_mwms``): every host a worker on port 8890, the task
  index the host's position in the sorted host list.
- ``user_shards``: which worker trains on which users. Sharding is by user, so a
  worker samples each of its users' negatives knowing all of that user's
  positives (a negative is never one of them), and the shards hold nearly
  equal numbers of interactions.
- ``scaled_learning_rate``: the learning rate for ``R`` replicas. The
  ``batch_size`` hyperparameter is per replica, so the global batch is
  ``batch_size * R`` and one epoch takes ``R`` times fewer steps. The learning
  rate follows the batch: linearly for SGD (Goyal et al., 2017, "Accurate,
  Large Minibatch SGD") and by ``sqrt(R)`` for the adaptive optimisers (Adam,
  Adagrad, RMSprop; Malladi et al., 2022, "On the SDEs and Scaling Rules for
  Adaptive Gradient Algorithms"), unless ``learning_rate_scaling`` says otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncf_contract.channels import SHARDED_BY_S3_KEY, SHARDED_TRAIN_REFUSED, TRAIN
from training.errors import ConfigError

#: The worker port of the SageMaker TensorFlow toolkit's MultiWorkerMirroredStrategy setup.
WORKER_PORT = 8890
#: The ``distribution`` hyperparameter's values (the launcher sends the first with N > 1).
MULTI_WORKER_MIRRORED, CHIEF_ONLY = "multi_worker_mirrored", "chief_only"
#: The ``learning_rate_scaling`` hyperparameter's values.
LEARNING_RATE_SCALINGS = ("auto", "linear", "sqrt", "none")
_ADAPTIVE_OPTIMIZERS = ("adam", "adagrad", "rmsprop")


@dataclass(frozen=True)
class Cluster:
    """The job's hosts and this host's place among them.

    Attributes:
        hosts: Every host of the job, sorted (the order SageMaker's toolkits use).
        current_host: This host.
    """

    hosts: tuple[str, ...] = ("algo-1",)
    current_host: str = "algo-1"

    @classmethod
    def of(cls, hosts: tuple[str, ...] | list[str], current_host: str) -> Cluster:
        """The cluster of ``hosts`` (any order) seen from ``current_host``.

        Raises:
            ConfigError: ``current_host`` is not one of ``hosts``.
        """
        ordered = tuple(sorted(hosts))
        if current_host not in ordered:
            raise ConfigError(
                f"resourceconfig.json: current_host {current_host!r} is not among the "
                f"hosts {list(ordered)}"
            )
        return cls(ordered, current_host)

    @property
    def num_workers(self) -> int:
        """How many hosts train."""
        return len(self.hosts)

    @property
    def worker_index(self) -> int:
        """This host's position in ``hosts`` (its TF_CONFIG task index)."""
        return self.hosts.index(self.current_host)

    @property
    def chief(self) -> str:
        """The host that writes the model, the report and the checkpoints."""
        return self.hosts[0]

    @property
    def is_chief(self) -> bool:
        """Whether this host is the chief."""
        return self.current_host == self.chief

    @property
    def multi_host(self) -> bool:
        """Whether the job has more than one host."""
        return self.num_workers > 1


def tf_config(cluster: Cluster, port: int = WORKER_PORT) -> dict[str, Any]:
    """``TF_CONFIG`` for ``MultiWorkerMirroredStrategy``: every host a worker on ``port``."""
    return {
        "cluster": {"worker": [f"{host}:{port}" for host in cluster.hosts]},
        "task": {"type": "worker", "index": cluster.worker_index},
    }


def check_train_replicated(input_data_config: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a train channel sharded by S3 key for a job on several instances.

    Every worker builds the user and item vocabularies from the whole train
    channel, then keeps its own users; with ``ShardedByS3Key`` each host would
    see different files and build different vocabularies, and a chief training
    alone would see a share of the data.

    Raises:
        ConfigError: The train channel's ``S3DistributionType`` is ``ShardedByS3Key``.
    """
    distribution = input_data_config.get(TRAIN, {}).get("S3DistributionType")
    if distribution == SHARDED_BY_S3_KEY:
        raise ConfigError(SHARDED_TRAIN_REFUSED)


def user_shards(user_index: np.ndarray, num_users: int, num_shards: int, seed: int) -> np.ndarray:
    """The shard (worker) of each user, balancing interactions across shards.

    Users are taken in a seeded random order and cut where the running count of
    their interactions crosses ``k / num_shards`` of the total, so shard sizes
    differ by at most one user's interactions and every host, holding the same
    data, computes the same assignment without talking to the others.

    Args:
        user_index: ``[n]`` user of each training interaction.
        num_users: Users in the vocabulary.
        num_shards: Workers.
        seed: The job's seed.

    Returns:
        ``[num_users]`` int32 shard of each user.
    """
    counts = np.bincount(user_index, minlength=num_users).astype(np.int64)
    order = np.random.default_rng([seed, num_shards]).permutation(num_users)
    running = np.cumsum(counts[order])
    total = max(int(running[-1]) if len(running) else 0, 1)
    # The interaction count before each user decides its shard: floor(before * k / total).
    before = running - counts[order]
    shard_in_order = np.minimum((before * num_shards) // total, num_shards - 1)
    shards = np.empty(num_users, dtype=np.int32)
    shards[order] = shard_in_order
    return shards


def scaled_learning_rate(
    learning_rate: float, optimizer: str, scaling: str, num_replicas: int
) -> float:
    """The learning rate for a global batch ``num_replicas`` times the per-replica one.

    ``auto`` is ``linear`` for SGD and ``sqrt`` for the adaptive optimisers (see
    the module docstring); ``none`` keeps the rate.
    """
    if scaling == "auto":
        scaling = "sqrt" if optimizer in _ADAPTIVE_OPTIMIZERS else "linear"
    if scaling == "linear":
        return learning_rate * num_replicas
    if scaling == "sqrt":
        return learning_rate * math.sqrt(num_replicas)
    return learning_rate


_TASK = re.compile(r"/job:worker/replica:\d+/task:(\d+)")


def lost_hosts(message: str, cluster: Cluster) -> list[str]:
    """The hosts a TensorFlow collective error names (other than this one), in order."""
    indices = sorted({int(found) for found in _TASK.findall(message)})
    return [
        cluster.hosts[index]
        for index in indices
        if index < cluster.num_workers and index != cluster.worker_index
    ]
