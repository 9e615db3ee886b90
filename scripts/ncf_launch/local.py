"""``--local``: rehearse training and serving with SageMaker local mode on Docker.

Training sends the same ``CreateTrainingJob`` request (built by the same
``ModelTrainer`` as ``ncf train``) to the SDK's local-mode client
(``sagemaker.core.local``), which writes ``/opt/ml/input/config/*.json``,
mounts the channels and runs ``docker compose`` with our image and the
``train`` argument, as SageMaker does. Serving sends the same
``CreateModel`` / ``CreateEndpointConfig`` / ``CreateEndpoint`` requests as
``ncf deploy`` (:mod:`ncf_launch.api_requests`) to that client, which runs
the image with ``serve``.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from sagemaker.core.local.local_session import LocalSagemakerRuntimeClient, LocalSession

from ncf_launch import sdk
from ncf_launch.api_requests import create_endpoint_config_request, create_endpoint_request
from ncf_launch.errors import LaunchError
from ncf_launch.hosting import create_model
from ncf_launch.names import check_instance_type, check_name, unique_name
from ncf_launch.options import DEFAULT_LOCAL_PORT, DeployOptions, TrainOptions
from ncf_launch.settings import Settings
from ncf_launch.train import build_trainer

#: Where ``ncf train --local`` leaves ``model.tar.gz`` without ``--output-path``.
DEFAULT_LOCAL_OUTPUT = "local/output"


def local_session(
    settings: Settings, container_root: Path | None = None, port: int = DEFAULT_LOCAL_PORT
) -> LocalSession:
    """The SDK's ``LocalSession``: SageMaker's API implemented with docker compose."""
    boto_session = boto3.Session(region_name=settings.region or "us-east-1")
    session = LocalSession(boto_session=boto_session)
    local_config: dict[str, Any] = {"local_code": True, "serving_port": port}
    if container_root is not None:
        container_root.mkdir(parents=True, exist_ok=True)
        local_config["container_root"] = str(container_root)
    session.config = {"local": local_config}
    return session


def to_local_channel_uris(channels: dict[str, str]) -> dict[str, str]:
    """Local folders become ``file://`` URIs; ``file://`` and ``s3://`` stay as they are."""
    converted = {}
    for name, uri in channels.items():
        if "://" in uri:
            converted[name] = uri
            continue
        path = Path(uri).resolve()
        if not path.exists():
            raise LaunchError(f"--{name.replace('_', '-')}: {path} does not exist")
        converted[name] = f"file://{path}"
    return converted


def run_local_train(
    settings: Settings, options: TrainOptions, container_root: Path | None = None
) -> dict[str, Any]:
    """Train with SageMaker local mode on Docker; the model lands in ``--output-path``."""
    output_dir = Path(
        urlparse(options.output_path).path if options.output_path else DEFAULT_LOCAL_OUTPUT
    ).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    local_options = replace(
        options,
        channels=to_local_channel_uris(options.channels),
        output_path=f"file://{output_dir}",
    )
    trainer = build_trainer(settings, local_options, context=None)
    request = sdk.training_job_request(trainer)
    request.pop("Tags", None)  # the local client does not take tags
    container_root = container_root or Path(tempfile.mkdtemp(prefix="ncf-local-"))
    session = local_session(settings, container_root)
    started = time.monotonic()
    try:
        session.sagemaker_client.create_training_job(**request)
    except RuntimeError as error:  # the SDK's "docker compose exited with code N"
        raise LaunchError(
            f"local training job {request['TrainingJobName']} failed: "
            f"{local_failure_reason(output_dir) or error} (container log above)"
        ) from error
    finally:
        compose_down_under(container_root)
    description = session.sagemaker_client.describe_training_job(
        TrainingJobName=request["TrainingJobName"]
    )
    return {
        "training_job_name": request["TrainingJobName"],
        "status": description["TrainingJobStatus"],
        "model_artifact": description["ModelArtifacts"]["S3ModelArtifacts"],
        "seconds": round(time.monotonic() - started, 1),
    }


def local_failure_reason(output_dir: Path) -> str | None:
    """The first line of ``output/failure`` from the ``output.tar.gz`` local mode packed."""
    archive_path = output_dir / "output.tar.gz"
    if not archive_path.is_file():
        return None
    with tarfile.open(archive_path) as archive:
        for member in archive.getmembers():
            if Path(member.name).name == "failure" and member.isfile():
                handle = archive.extractfile(member)
                text = handle.read().decode("utf-8", errors="replace") if handle else ""
                return text.strip().splitlines()[0] if text.strip() else None
    return None


def compose_down(compose_file: Path) -> None:
    """``docker compose down`` for one local-mode project.

    SageMaker removes its instances after a job; the SDK's local mode leaves the
    exited containers behind, so this does what SageMaker would.
    """
    if compose_file.is_file():
        subprocess.run(
            [*sdk.compose_command(), "-f", str(compose_file), "down"],
            capture_output=True,
            check=False,
            timeout=120,
        )


def compose_down_under(root: Path) -> None:
    """``docker compose down`` for every local-mode project the SDK made under ``root``."""
    for compose_file in Path(root).glob("*/docker-compose.yaml"):
        compose_down(compose_file)


def run_local_deploy(
    settings: Settings,
    options: DeployOptions,
    port: int = DEFAULT_LOCAL_PORT,
    container_root: Path | None = None,
) -> tuple[LocalSession, dict[str, Any]]:
    """Serve the model with SageMaker local mode; returns the local session and the names.

    The SDK's local client takes the same ``CreateModel`` / ``CreateEndpointConfig`` /
    ``CreateEndpoint`` arguments, extracts ``model.tar.gz`` into ``/opt/ml/model``, runs
    our image with ``serve`` under docker compose on ``port`` and waits for ``/ping``.
    Stop it with :func:`stop_local_endpoint`.
    """
    check_name(options.endpoint_name, "--endpoint-name")
    if not options.model_data:
        raise LaunchError(
            "--local needs --model-data file:///.../model.tar.gz (from ncf train --local)"
        )
    container_root = container_root or Path(tempfile.mkdtemp(prefix="ncf-local-"))
    session = local_session(settings, container_root, port=port)
    client = session.sagemaker_client
    instance_type = check_instance_type(options.instance_type, local=True)
    model_name = create_model(
        client,
        settings,
        options.model_data,
        options.container_environment(),
        instance_type,
        local=True,
    )
    config_name = unique_name(f"{options.endpoint_name}-config")
    client.create_endpoint_config(
        **create_endpoint_config_request(
            config_name,
            model_name,
            instance_type,
            replace(options, instance_count=1),  # one local container
            tags=None,
        )
    )
    client.create_endpoint(**create_endpoint_request(options.endpoint_name, config_name, None))
    return session, {
        "endpoint_name": options.endpoint_name,
        "endpoint_config_name": config_name,
        "model_name": model_name,
        "url": f"http://localhost:{port}/invocations",
        "status": client.describe_endpoint(EndpointName=options.endpoint_name)["EndpointStatus"],
    }


def stop_local_endpoint(session: LocalSession, names: dict[str, Any]) -> None:
    """Stop the local serving container and forget the local model and config."""
    client = session.sagemaker_client
    endpoint = sdk.local_endpoint(names["endpoint_name"])
    container = getattr(endpoint, "container", None)
    root = getattr(container, "container_root", None)
    if root:
        compose_down(Path(root) / "docker-compose.yaml")
    # The SDK's hosting thread reports the stopped `docker compose up` as a failure; it is not.
    previous_hook = threading.excepthook
    threading.excepthook = lambda hook_args: None
    try:
        client.delete_endpoint(EndpointName=names["endpoint_name"])
        if container is not None and container.container:
            container.container.join(timeout=30)
    finally:
        threading.excepthook = previous_hook
    client.delete_endpoint_config(EndpointConfigName=names["endpoint_config_name"])
    client.delete_model(ModelName=names["model_name"])


def invoke_local(body: dict[str, Any], endpoint_name: str, port: int) -> dict[str, Any]:
    """Send ``body`` to the local-mode endpoint on ``port``; return the decoded answer."""
    runtime = LocalSagemakerRuntimeClient({"local": {"serving_port": port}})
    response = runtime.invoke_endpoint(
        Body=json.dumps(body),
        EndpointName=endpoint_name,
        ContentType="application/json",
        Accept="application/json",
    )
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    text = response["Body"].read().decode("utf-8")
    if status != 200:
        raise LaunchError(f"local endpoint answered {status}: {text}")
    return json.loads(text)
