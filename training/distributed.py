"""Data-parallel training on TensorFlow's own distribution strategies.

``make_distribution`` picks the strategy once, right after TensorFlow loads:

- several hosts: ``tf.distribute.MultiWorkerMirroredStrategy`` with a
  ``TF_CONFIG`` built from ``resourceconfig.json`` (``training.cluster.tf_config``);
  a ``TF_CONFIG`` already in the environment (one's own cluster, or the tests'
  localhost ports) is used instead, once checked against the hosts;
- one host with several GPUs: ``tf.distribute.MirroredStrategy`` over them;
- otherwise none: a single CPU or GPU pays no strategy overhead and the
  Keras ``fit`` loop of ``training.families.ncf`` runs as before.

Under a strategy, ``DistributedSteps`` runs Keras' own ``train_step`` (loss,
per-replica loss scaling, optimiser) inside ``strategy.run``, several steps per
call, and TensorFlow all-reduces the gradients. Keras 3's ``fit`` itself cannot
drive ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585: its symbolic build
and its metric reduction call ``strategy.reduce`` on nested values), hence this
short loop. Each worker feeds its own shard of users (``training.cluster.user_shards``);
every worker takes the same number of steps per epoch (its shard repeats or is cut
by at most one user's examples), as the collectives require.

After every call the workers agree, by one scalar all-reduce, whether any of
them received SIGTERM, so all stop after the same step. A worker that dies is
noticed by the strategy's heartbeats: the collectives of the others fail with
``UnavailableError`` within seconds, which becomes a ``WorkerLostError`` naming
the host (``collective_failures``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from training.cluster import Cluster, lost_hosts, tf_config
from training.errors import ConfigError, WorkerLostError
from training.objectives import Examples
from training.signals import StopFlag

logger = logging.getLogger(__name__)

#: Batches per call into the compiled distributed step (as ``STEPS_PER_EXECUTION`` in ``fit``).
STEPS_PER_CALL = 16


@dataclass(frozen=True)
class Distribution:
    """A strategy and the hosts it spans.

    Attributes:
        strategy: ``MultiWorkerMirroredStrategy`` or ``MirroredStrategy``.
        cluster: The job's hosts and this host's place among them.
    """

    strategy: tf.distribute.Strategy
    cluster: Cluster

    @property
    def num_replicas(self) -> int:
        """Replicas over all hosts (the global batch is ``batch_size`` times this)."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        """Whether this host writes the model, the report and the checkpoints."""
        return self.cluster.is_chief

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Create variables (model, optimiser) under this; they are mirrored on every replica."""
        return self.strategy.scope()

    def _all_reduce_sum(self, value: float) -> float:
        """The sum over replicas of ``value`` (a collective every worker must call)."""
        return float(_sum_over_replicas(self.strategy, tf.constant(value, tf.float32)))

    def barrier(self, what: str) -> None:
        """Wait until every worker gets here (a scalar all-reduce)."""
        with collective_failures(self.cluster, what):
            self._all_reduce_sum(1.0)

    def check_same_start(self, epoch: int) -> None:
        """Refuse to train when the workers resumed from different epochs.

        Raises:
            ConfigError: Some host resumed from another checkpoint (or none).
        """
        with collective_failures(self.cluster, "comparing checkpoints"):
            total = self._all_reduce_sum(float(epoch))
        if not math.isclose(total, epoch * self.num_replicas):
            raise ConfigError(
                f"the hosts start from different checkpoints (host {self.cluster.current_host} "
                f"resumes after epoch {epoch}, the others do not all agree); every host must "
                "see the same checkpoints/ directory, as SageMaker's checkpoint S3 sync provides"
            )


@tf.function
def _sum_over_replicas(strategy: tf.distribute.Strategy, value: tf.Tensor) -> tf.Tensor:
    def replica_sum(local: tf.Tensor) -> tf.Tensor:
        # tf.identity places the value on the replica's device; the collective needs that.
        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(local))

    per_replica = strategy.run(replica_sum, args=(value,))
    return strategy.experimental_local_results(per_replica)[0]


def make_distribution(cluster: Cluster, tf_config_json: str | None) -> Distribution | None:
    """The strategy for this job (see the module docstring), or ``None`` for none.

    Call before any other TensorFlow operation: ``MultiWorkerMirroredStrategy``
    starts this host's gRPC server and must exist before the runtime initialises.

    Raises:
        ConfigError: A given ``TF_CONFIG`` does not match the job's hosts.
    """
    if cluster.multi_host:
        spec = _worker_spec(cluster, tf_config_json)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(spec["cluster"]),
            task_type="worker",
            task_id=spec["task"]["index"],
            rpc_layer="grpc",
        )
        logger.info(
            "MultiWorkerMirroredStrategy: host %s is worker %d of %s (chief %s)",
            cluster.current_host,
            cluster.worker_index,
            spec["cluster"]["worker"],
            cluster.chief,
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        return Distribution(strategy, cluster)
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        logger.info("MirroredStrategy over %d GPUs", len(gpus))
        return Distribution(tf.distribute.MirroredStrategy(), cluster)
    return None


def _worker_spec(cluster: Cluster, tf_config_json: str | None) -> dict[str, Any]:
    if tf_config_json is None:
        return tf_config(cluster)
    try:
        spec = json.loads(tf_config_json)
        workers, index = spec["cluster"]["worker"], int(spec["task"]["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"TF_CONFIG must be JSON with cluster.worker and task.index: {error!r}"
        ) from error
    if len(workers) != cluster.num_workers or index != cluster.worker_index:
        raise ConfigError(
            f"TF_CONFIG names {len(workers)} worker(s) and task {index}, but the job has hosts "
            f"{list(cluster.hosts)} and this is {cluster.current_host} (worker "
            f"{cluster.worker_index}); unset TF_CONFIG to have it built from resourceconfig.json"
        )
    return {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}}


@contextlib.contextmanager
def collective_failures(cluster: Cluster, what: str) -> Iterator[None]:
    """Turn a collective that failed because a peer died into a ``WorkerLostError``."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        hosts = lost_hosts(str(error), cluster) or ["another host"]
        raise WorkerLostError(hosts, cluster.current_host, what) from error


class DistributedSteps:
    """One epoch of Keras' ``train_step`` on every replica, the gradients all-reduced."""

    def __init__(self, distribution: Distribution, model: Any) -> None:
        self.distribution = distribution
        self.model = model
        strategy = distribution.strategy

        def agree_to_stop(local_stop: tf.Tensor) -> tf.Tensor:
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(local_stop))

        @tf.function
        def run_steps(iterator: Any, steps: tf.Tensor, local_stop: tf.Tensor) -> tf.Tensor:
            for _ in tf.range(steps):
                strategy.run(model.train_step, args=(next(iterator),))
            stops = strategy.run(agree_to_stop, args=(local_stop,))
            return strategy.experimental_local_results(stops)[0]

        self._run_steps = run_steps

    def fit_epoch(
        self,
        examples: Examples,
        batch_size: int,
        total_examples: int,
        stop_flag: StopFlag,
        what: str,
    ) -> tuple[float, bool]:
        """Fit one epoch of this worker's ``examples``.

        Args:
            examples: This worker's examples, shuffled (with loss weights, if any).
            batch_size: Examples per replica per step.
            total_examples: Examples of the epoch over every worker; the step count
                ``ceil(total_examples / (batch_size * replicas))`` is the same on all.
            stop_flag: This host's SIGTERM flag; set here when any worker's is.
            what: For error messages (``"epoch 3"``).

        Returns:
            ``(mean training loss over every replica, stopped by SIGTERM somewhere)``.

        Raises:
            WorkerLostError: Another worker stopped answering.
        """
        strategy = self.distribution.strategy
        global_batch = batch_size * self.distribution.num_replicas
        steps = max(1, math.ceil(total_examples / global_batch))
        inputs = (examples.users.astype(np.int32), examples.items.astype(np.int32))
        labels = examples.targets.astype(np.float32).reshape(-1, 1)
        # Keras' train_step applies sample weights (recency_half_life) as a third element.
        pairs = (
            (inputs, labels)
            if examples.weights is None
            else (inputs, labels, examples.weights.astype(np.float32))
        )

        def worker_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
            # Our own shard on every worker: no auto-sharding, no re-batching.
            return (
                tf.data.Dataset.from_tensor_slices(pairs)
                .repeat()
                .batch(context.get_per_replica_batch_size(global_batch), drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE)
            )

        with collective_failures(self.distribution.cluster, what):
            iterator = iter(strategy.distribute_datasets_from_function(worker_dataset))
            self.model.reset_metrics()
            done, stopped = 0, False
            while done < steps and not stopped:
                chunk = min(STEPS_PER_CALL, steps - done)
                agreed = self._run_steps(
                    iterator, tf.constant(chunk), tf.constant(1.0 if stop_flag else 0.0)
                )
                done += chunk
                stopped = float(agreed) > 0
            # The loss tracker is synchronised on read: every worker reads the global mean.
            loss = float(self.model.get_metrics_result()["loss"])
        if stopped:
            stop_flag.set()
        return loss, stopped
