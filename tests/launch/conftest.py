"""Fixtures for the launch scripts: settings in the environment, a CLI runner, call capture."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from launch_constants import BUCKET, IMAGE_URI, REGION, REPO_ROOT, ROLE_ARN, TEST_IMAGE


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No NCF_* settings or ncf.toml leak in from the developer's shell or working directory."""
    for name in ("NCF_REGION", "NCF_ROLE_ARN", "NCF_IMAGE_URI", "NCF_BUCKET", "NCF_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NCF_CONFIG", str(tmp_path / "absent-ncf.toml"))
    # AwsContext may switch the SDK's role check off; setting it here restores it after the test.
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "true")


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where botocore finds no credentials at all."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def launch_env(aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The moto server plus valid NCF_* settings and an S3 bucket."""
    monkeypatch.setenv("NCF_REGION", REGION)
    monkeypatch.setenv("NCF_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("NCF_IMAGE_URI", IMAGE_URI)
    monkeypatch.setenv("NCF_BUCKET", BUCKET)
    s3 = aws_env.client("s3")
    if BUCKET not in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return aws_env


@dataclass
class CliResult:
    """What one ``ncf`` run printed and returned."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def ncf(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``ncf ARGS...`` in-process (the same ``main`` as ``scripts/ncf``)."""
    from ncf_launch.cli import main

    def run(*argv: str) -> CliResult:
        printed: list[str] = []
        code = main(list(argv), out=printed.append)
        captured = capsys.readouterr()
        return CliResult(code, "\n".join(printed), captured.err + captured.out)

    return run


@dataclass
class CapturedCalls:
    """Requests captured at botocore level on their way to the (moto) server."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def params(self, operation: str) -> dict[str, Any]:
        """The parameters of the last call of ``operation``."""
        matching = [params for _, op, params in self.calls if op == operation]
        assert matching, f"no {operation} call; saw {[op for _, op, _ in self.calls]}"
        return matching[-1]

    def operations(self) -> list[str]:
        return [op for _, op, _ in self.calls]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[CapturedCalls]:
    """Record the parameters of every call the commands make, and still send them.

    Used where moto accepts a request but drops part of it (e.g. MetricDefinitions),
    so the test can assert on what was sent as well as on what arrived.
    """
    import ncf_launch.aws as aws_module

    capture = CapturedCalls()
    original_init = aws_module.AwsContext.__init__

    def keep(params: dict[str, Any], model: Any, **_: Any) -> None:
        capture.calls.append(
            (
                model.service_model.service_name,
                model.name,
                json.loads(json.dumps(params, default=str)),
            )
        )

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.boto_session.events.register("before-parameter-build", keep)

    monkeypatch.setattr(aws_module.AwsContext, "__init__", init)
    yield capture


@pytest.fixture(scope="session")
def test_image() -> str:
    """``TEST_IMAGE`` built from the repository's Dockerfile (on the shared base image).

    Built once per session with the same tag and build arguments as the container
    tests, so both share Docker's layer cache: after the first build only the code
    layers are rebuilt, in seconds.
    """
    base = os.environ.get("NCF_BASE_IMAGE", "local/python:3.11")
    build = subprocess.run(
        ["docker", "build", "--build-arg", f"BASE_IMAGE={base}", "-t", TEST_IMAGE, "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert build.returncode == 0, (
        f"docker build failed:\n{build.stdout[-3000:]}{build.stderr[-3000:]}"
    )
    return TEST_IMAGE


@pytest.fixture
def stubbed_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Every client of the command (the SDK's included) is a stubbed real botocore client."""
    import ncf_launch.aws as aws_module
    from stubbed_aws import StubbedAws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    stubbed = StubbedAws()
    original_init = aws_module.AwsContext.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.boto_session.client = stubbed.client  # type: ignore[method-assign]

    monkeypatch.setattr(aws_module.AwsContext, "__init__", init)
    yield stubbed
