"""The image for real: ``docker build``, then ``train``, ``serve`` and S3 input via ``docker run``.

The SageMaker contracts exercised through the image's entrypoint, from the host, the
way SageMaker (or a user with Docker) runs it: ``/opt/ml`` mounted as a volume, the
port published, SIGTERM sent by ``docker stop``.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import pandas as pd
import pytest
from container_helpers import (
    CONTAINER_HYPERPARAMETERS,
    StartServer,
    TrainingRun,
    describe,
    docker,
    run_container,
    wait_for_ping,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_without_a_command_the_entrypoint_prints_usage_and_exits_2(image: str) -> None:
    for arguments in ([], ["bogus"]):
        result = docker("run", "--rm", image, *arguments)
        assert result.returncode == 2, describe(result)
        assert "usage: docker run" in result.stderr
        assert "train" in result.stderr and "serve" in result.stderr


def test_image_is_labelled_for_sagemaker_and_holds_no_sdk_or_test_tools(image: str) -> None:
    result = docker("image", "inspect", image)
    assert result.returncode == 0, describe(result)
    config = json.loads(result.stdout)[0]["Config"]
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert config["Entrypoint"] == ["/opt/program/container/entrypoint"]
    assert "PYTHONUNBUFFERED=1" in config["Env"]
    probe = docker(
        "run",
        "--rm",
        "--entrypoint",
        "python3",
        image,
        "-c",
        "import importlib.util as u; "
        "print([m for m in ('sagemaker', 'pytest', 'moto', 'hypothesis') if u.find_spec(m)])",
    )
    assert probe.returncode == 0, describe(probe)
    assert probe.stdout.strip() == "[]"


def test_train_writes_the_model_and_the_report(container_training: TrainingRun) -> None:
    layout, result = container_training.layout, container_training.result
    assert result.returncode == 0, describe(result)
    for name in ("metadata.json", "weights.npz", "users.parquet", "items.parquet", "seen.npz"):
        assert (layout.model_dir / name).is_file(), name
    assert (layout.model_dir / "saved_model").is_dir()
    assert (layout.output_data_dir / "metrics.json").is_file()
    assert not layout.failure_file.exists()
    assert f"epoch={CONTAINER_HYPERPARAMETERS['epochs']} " in result.stdout + result.stderr


def test_train_on_bad_data_writes_the_failure_and_exits_non_zero(
    image: str, sagemaker_layout: Any, interactions: pd.DataFrame
) -> None:
    sagemaker_layout.write_channel("train", interactions.rename(columns={"user_id": "customer"}))
    sagemaker_layout.write_config(CONTAINER_HYPERPARAMETERS)
    result = run_container(image, "train", sagemaker_layout.base_dir)
    assert result.returncode != 0, describe(result)
    failure = sagemaker_layout.failure_file.read_text()
    assert "user_id" in failure, failure
    model_dir = sagemaker_layout.model_dir
    assert not model_dir.exists() or not any(model_dir.iterdir())


def test_serve_answers_ping_and_invocations_and_stops_on_sigterm(
    container_training: TrainingRun, image: str, start_server: StartServer
) -> None:
    assert container_training.result.returncode == 0, describe(container_training.result)
    server = start_server(image, container_training.layout.model_dir)
    seconds_to_ping = wait_for_ping(server)
    assert seconds_to_ping < 30, f"/ping took {seconds_to_ping:.1f} s"

    body = {"instances": [{"user_id": "u1", "k": 5}, {"item_id": "i3", "k": 3}]}
    request = urllib.request.Request(
        f"{server.url}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        predictions = json.loads(response.read())["predictions"]
    assert predictions[0]["user_id"] == "u1"
    assert len(predictions[0]["items"]) == 5
    assert predictions[1]["item_id"] == "i3"
    assert len(predictions[1]["items"]) == 3

    started = time.monotonic()
    stopped = docker("stop", "--time", "30", server.name, timeout=60)  # SIGTERM, SIGKILL at 30 s
    assert stopped.returncode == 0, describe(stopped)
    assert time.monotonic() - started < 30, "serve did not exit on SIGTERM"
    state = json.loads(docker("inspect", server.name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, server.logs()


#: Lists the processes, the listening TCP ports and the Unix sockets inside the container.
PROCESS_PROBE = """
import pathlib
for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
    try:
        print("process", cmdline.read_bytes().replace(b"\\0", b" ").decode().strip())
    except OSError:
        pass
for line in open("/proc/net/tcp").readlines()[1:] + open("/proc/net/tcp6").readlines()[1:]:
    local, state = line.split()[1], line.split()[3]
    if state == "0A":
        print("tcp-listen", int(local.rsplit(":", 1)[1], 16))
for line in open("/proc/net/unix").readlines()[1:]:
    if len(line.split()) > 7:
        print("unix", line.split()[7])
"""


def test_serve_listens_through_nginx_with_gunicorn_on_a_unix_socket(
    container_training: TrainingRun, image: str, start_server: StartServer
) -> None:
    assert container_training.result.returncode == 0, describe(container_training.result)
    server = start_server(image, container_training.layout.model_dir)
    wait_for_ping(server)
    with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
        assert response.headers["Server"] == "nginx"

    probe = docker("exec", server.name, "python3", "-c", PROCESS_PROBE)
    assert probe.returncode == 0, describe(probe)
    lines = probe.stdout.splitlines()
    assert any(line.startswith("process nginx: master process") for line in lines), lines
    assert [line for line in lines if line.startswith("tcp-listen")] == ["tcp-listen 8080"]
    assert any(line.endswith("/gunicorn.sock") for line in lines if line.startswith("unix")), lines

    # A client that never finishes its headers is cut off by nginx; /ping answers meanwhile.
    host, port = server.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        ping_started = time.monotonic()
        with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
            assert response.status == 200
        assert time.monotonic() - ping_started < 2
        assert slow.recv(4096) == b""  # closed by the server
        assert time.monotonic() - started < 20

    stopped = docker("stop", "--time", "30", server.name, timeout=60)
    assert stopped.returncode == 0, describe(stopped)
    state = json.loads(docker("inspect", server.name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, server.logs()


def test_train_reads_its_channel_from_s3_through_an_endpoint(
    image: str, sagemaker_layout: Any, interactions: pd.DataFrame, moto_server: Any
) -> None:
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="ncf-container-tests")
    s3.put_object(
        Bucket="ncf-container-tests",
        Key="interactions/train/part-0.csv",
        Body=interactions.to_csv(index=False).encode(),
    )
    sagemaker_layout.write_config(CONTAINER_HYPERPARAMETERS)
    # The host's moto server, reached over the host network, as a user reaches their endpoint.
    env = {**moto_server.env, "SM_CHANNEL_TRAIN": "s3://ncf-container-tests/interactions/train/"}
    result = run_container(image, "train", sagemaker_layout.base_dir, env=env, network_host=True)
    assert result.returncode == 0, describe(result)
    metadata = json.loads((sagemaker_layout.model_dir / "metadata.json").read_text())
    assert metadata["format_version"] >= 1
