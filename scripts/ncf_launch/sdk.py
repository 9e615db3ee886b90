"""The one place that touches private members of the SageMaker SDK, each with why.

The SDK v3 (``sagemaker`` / ``sagemaker-core``) gives no public way to do the
few things below. Keeping them here means an SDK upgrade that renames one
breaks one small module, and the launcher's tests of it, not every command.
Importing this module imports the SDK (seconds), so only the commands that
need the SDK import it.
"""

from __future__ import annotations

from typing import Any

from sagemaker.core.local.image import _SageMakerContainer
from sagemaker.core.local.local_session import LocalSagemakerClient
from sagemaker.core.utils.logs import CloudWatchLogsClient
from sagemaker.core.utils.utils import SingletonMeta
from sagemaker.train.model_trainer import ModelTrainer


def latest_training_job(trainer: ModelTrainer) -> Any:
    """The ``TrainingJob`` resource that ``trainer.train()`` just created.

    Why private: ``ModelTrainer.train()`` returns ``None`` and keeps the job it
    created only in the ``_latest_training_job`` attribute (the SDK's own
    ``HyperparameterTuner`` and pipelines read it the same way).
    """
    return trainer._latest_training_job


def training_job_request(trainer: ModelTrainer) -> dict[str, Any]:
    """The exact ``CreateTrainingJob`` request (boto3 shape) the trainer would send.

    Why private: local mode sends this request to the SDK's local-mode client
    (which runs docker compose as SageMaker would), and the SDK builds it only
    inside ``train()``; ``_create_training_job_args(boto3=True)`` is that builder.
    """
    return trainer._create_training_job_args(boto3=True)


def compose_command() -> list[str]:
    """``docker compose`` or ``docker-compose``, whichever this machine has.

    Why private: local mode leaves exited containers behind; removing them needs
    the same compose command the SDK chose, which only
    ``_SageMakerContainer._get_compose_cmd_prefix`` knows.
    """
    return list(_SageMakerContainer._get_compose_cmd_prefix())


def local_endpoint(endpoint_name: str) -> Any:
    """The SDK's running local endpoint object of that name, or ``None``.

    Why private: the local client's ``describe_endpoint`` returns a dict; the
    object that owns the serving containers (to stop them) is only in the
    client's ``_endpoints`` registry.
    """
    return LocalSagemakerClient._endpoints.get(endpoint_name)


def route_job_logs(logs_client: Any) -> None:
    """Make the SDK read job logs with ``logs_client`` (this command's region and endpoint).

    Why private: ``TrainingJob.wait(logs=True)`` reads CloudWatch through the
    ``CloudWatchLogsClient`` singleton, which builds its client from a new default
    ``boto3.Session()``. That session knows nothing of ``NCF_REGION``/``--region``
    (``NoRegionError`` while the job keeps running) or reads another region's logs.
    The singleton keeps its client in a class attribute that ``__init__`` fills only
    when empty; setting it, and dropping an instance made earlier, routes every
    later read through our client.
    """
    CloudWatchLogsClient.client = logs_client
    SingletonMeta._instances.pop(CloudWatchLogsClient, None)
