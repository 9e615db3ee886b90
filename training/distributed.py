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
them received SIGTERM, so all stop after the same step. A worker that dies, or
stops altogether (SIGSTOP), is noticed by the coordination service's heartbeats:
the collectives of the others fail with ``UnavailableError`` within seconds. A
worker that is alive but stuck (its heartbeats go on, it never reaches the next
collective) is caught by ``CollectiveWatchdog``: when this host's collectives make
no progress for ``collective_timeout`` seconds it aborts them, and the blocked one
fails with ``DeadlineExceededError``. Either becomes a ``WorkerLostError`` naming
the host (``Distribution.failures``). Only a worker waiting for the chief's work
alone (a search trial of a family that does not distribute, the chief's test and
export) waits without a limit (``wait=True``): that work takes as long as it
takes, and a chief that dies still ends the wait through the heartbeats.

``Distribution.broadcast`` hands the chief's decisions (a search trial's settings,
prune or continue after each epoch) to every worker on the same collectives: an
all-reduce of a fixed-size int32 tensor that the chief fills with the message's
JSON and every other host leaves zero, with one more slot in which every host
counts its SIGTERM, so every host learns of a stop at the same message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context as eager_context

from training.cluster import Cluster, lost_hosts, tf_config
from training.errors import ConfigError, WorkerLostError
from training.objectives import Examples
from training.signals import StopFlag

logger = logging.getLogger(__name__)

#: Batches per call into the compiled distributed step (as ``STEPS_PER_EXECUTION`` in ``fit``).
STEPS_PER_CALL = 16
#: The longest message ``Distribution.broadcast`` carries, in bytes of JSON.
MESSAGE_BYTES = 16_384


class CollectiveWatchdog:
    """Aborts this host's collectives once they make no progress for ``timeout`` seconds.

    Not ``CommunicationOptions(timeout_seconds=...)``: TensorFlow schedules each
    collective's deadline on a thread of its own that sleeps out the whole timeout,
    so under the gradient all-reduces a worker gained about 1,200 threads a second
    (measured: 15,000 in 24 s, then the process could start no more and aborted).
    One thread watches instead: while a section of collectives is armed and reports
    no progress for ``timeout`` seconds, it aborts every collective of this process
    (``abort_collective_ops``, as the strategy's own health check does); the blocked
    one raises ``DeadlineExceededError``. ``timeout`` 0 watches nothing.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._armed_at: float | None = None
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """Collectives inside must progress within ``timeout`` seconds (see ``progress``)."""
        if self.timeout <= 0:
            yield
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="collective-watchdog", daemon=True
            )
            self._thread.start()
        self._armed_at = time.monotonic()
        try:
            yield
        finally:
            self._armed_at = None

    def progress(self) -> None:
        """The armed section's collectives moved on: its deadline starts again."""
        if self._armed_at is not None:
            self._armed_at = time.monotonic()

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            armed_at = self._armed_at
            if armed_at is not None and time.monotonic() - armed_at > self.timeout:
                message = f"no collective progress within collective_timeout={self.timeout:g} s"
                logger.error("%s: aborting this host's collectives", message)
                eager_context.context().abort_collective_ops(tf.errors.DEADLINE_EXCEEDED, message)
                return


@dataclass(frozen=True)
class Distribution:
    """A strategy and the hosts it spans.

    Attributes:
        strategy: ``MultiWorkerMirroredStrategy`` or ``MirroredStrategy``.
        cluster: The job's hosts and this host's place among them.
    """

    strategy: tf.distribute.Strategy
    cluster: Cluster
    collective_timeout: float = 0.0
    watchdog: CollectiveWatchdog = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "watchdog", CollectiveWatchdog(self.collective_timeout))

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

    @contextlib.contextmanager
    def failures(self, what: str, wait: bool = False) -> Iterator[None]:
        """Watch the collectives inside (unless ``wait``); a lost peer is a ``WorkerLostError``.

        Args:
            what: For error messages.
            wait: This host waits for the chief's work alone: no time limit.
        """
        with (
            collective_failures(self.cluster, what, self.collective_timeout),
            contextlib.nullcontext() if wait else self.watchdog.armed(),
        ):
            yield

    def _all_reduce_sum(self, value: float) -> float:
        """The sum over replicas of ``value`` (a collective every worker must call)."""
        return float(_sum_over_replicas(self.strategy, tf.constant([value], tf.float32))[0])

    def barrier(self, what: str, wait: bool = False) -> None:
        """Wait until every worker gets here (a scalar all-reduce).

        Args:
            what: For error messages.
            wait: This host waits for the chief's work alone: no collective timeout.
        """
        with self.failures(what, wait):
            self._all_reduce_sum(1.0)

    def broadcast(
        self, message: Mapping[str, Any] | None, stop_flag: StopFlag, what: str, wait: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """The chief's ``message`` on every host, and whether any host's ``stop_flag`` is set.

        Every host must call it at the same point: the chief with the message, the
        others with ``None``. When any host got SIGTERM, every host's ``stop_flag``
        is set on return.

        Args:
            message: The chief's JSON-serialisable message (``None`` elsewhere).
            stop_flag: This host's SIGTERM flag.
            what: For error messages.
            wait: This host waits for the chief's work alone: no collective timeout.

        Raises:
            ValueError: The chief's message is longer than ``MESSAGE_BYTES`` as JSON.
            WorkerLostError: Another host stopped answering.
        """
        slots = np.zeros(MESSAGE_BYTES + 2, dtype=np.int32)
        if self.is_chief:
            encoded = json.dumps(message).encode()
            if len(encoded) > MESSAGE_BYTES:
                raise ValueError(f"a broadcast message is {len(encoded)} > {MESSAGE_BYTES} bytes")
            slots[1] = len(encoded)
            slots[2 : 2 + len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
        slots[0] = 1 if stop_flag else 0
        with self.failures(what, wait):
            summed = _sum_over_replicas(self.strategy, tf.constant(slots), 1).numpy()
        stopped = bool(summed[0] > 0)
        if stopped:
            stop_flag.set()
        received = summed[2 : 2 + summed[1]].astype(np.uint8).tobytes()
        return json.loads(received), stopped

    def check_same_start(self, epoch: int) -> None:
        """Refuse to train when the workers resumed from different epochs.

        Raises:
            ConfigError: Some host resumed from another checkpoint (or none).
        """
        with self.failures("comparing checkpoints"):
            total = self._all_reduce_sum(float(epoch))
        if not math.isclose(total, epoch * self.num_replicas):
            raise ConfigError(
                f"the hosts start from different checkpoints (host {self.cluster.current_host} "
                f"resumes after epoch {epoch}, the others do not all agree); every host must "
                "see the same checkpoints/ directory, as SageMaker's checkpoint S3 sync provides"
            )


@tf.function
def _sum_over_replicas(
    strategy: tf.distribute.Strategy,
    value: tf.Tensor,
    first_replica_from: int | None = None,
) -> tf.Tensor:
    """The sum over every replica of ``value`` (a 1-D tensor).

    With ``first_replica_from``, ``value[first_replica_from:]`` counts from replica 0
    (the chief's first device) alone: every replica of a host is handed the host's
    value, and a broadcast keeps one copy of the chief's message.
    """

    def replica_sum(local: tf.Tensor) -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        # tf.identity places the value on the replica's device; the collective needs that.
        counted = tf.identity(local)
        if first_replica_from is not None:
            first = tf.cast(tf.equal(context.replica_id_in_sync_group, 0), local.dtype)
            cut = first_replica_from
            counted = tf.concat([local[:cut], local[cut:] * first], axis=0)
        return context.all_reduce(tf.distribute.ReduceOp.SUM, counted)

    per_replica = strategy.run(replica_sum, args=(value,))
    return strategy.experimental_local_results(per_replica)[0]


def make_distribution(
    cluster: Cluster,
    tf_config_json: str | None,
    collective_timeout: float = 0.0,
    device_type: str = "GPU",
) -> Distribution | None:
    """The strategy for this job (see the module docstring), or ``None`` for none.

    Call before any other TensorFlow operation: ``MultiWorkerMirroredStrategy``
    starts this host's gRPC server and must exist before the runtime initialises.

    Args:
        cluster: The job's hosts.
        tf_config_json: ``TF_CONFIG`` from the environment, if any.
        collective_timeout: Seconds this host's collectives may make no progress
            before they are aborted (0: no limit); see ``CollectiveWatchdog``.
        device_type: The devices one host mirrors over when it has several (``GPU``;
            the tests split the CPU into logical ``CPU`` devices to run that branch).

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
        return Distribution(strategy, cluster, collective_timeout)
    devices = [device.name for device in tf.config.list_logical_devices(device_type)]
    if len(devices) > 1:
        logger.info("MirroredStrategy over %d %s devices: %s", len(devices), device_type, devices)
        strategy = tf.distribute.MirroredStrategy(devices)
        return Distribution(strategy, cluster, collective_timeout)
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
def collective_failures(
    cluster: Cluster, what: str, collective_timeout: float = 0.0
) -> Iterator[None]:
    """Turn a collective that failed because a peer died or hung into a ``WorkerLostError``.

    A peer that died is named by the error. A timeout names no one (every peer still
    answers heartbeats; one of them never reached the collective): the other hosts are
    named, which on two hosts is exactly the one that hung.
    """
    try:
        yield
    except tf.errors.UnavailableError as error:
        hosts = lost_hosts(str(error), cluster) or ["another host"]
        raise WorkerLostError(hosts, cluster.current_host, what) from error
    except tf.errors.DeadlineExceededError as error:
        hosts = lost_hosts(str(error), cluster) or [
            host for host in cluster.hosts if host != cluster.current_host
        ]
        waited = f" (no answer within collective_timeout={collective_timeout:g} s)"
        raise WorkerLostError(hosts, cluster.current_host, what + waited) from error


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

        with self.distribution.failures(what):
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
                self.distribution.watchdog.progress()
            # The loss tracker is synchronised on read: every worker reads the global mean.
            loss = float(self.model.get_metrics_result()["loss"])
        if stopped:
            stop_flag.set()
        return loss, stopped
