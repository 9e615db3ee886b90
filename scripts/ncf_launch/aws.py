"""One boto3 session per command: region, credentials check, and the dry-run recorder.

Every AWS client of a command — the SDK's and ours — comes from this session,
so ``AWS_ENDPOINT_URL`` (honoured by botocore) and the recorder apply to all.
"""

from __future__ import annotations

import os
from typing import Any

import boto3

from ncf_launch.errors import LaunchError
from ncf_launch.recording import ApiRecorder
from ncf_launch.settings import Settings


class AwsContext:
    """The boto3 session of one command, and the recorder when it is a dry run."""

    def __init__(self, settings: Settings, need_credentials: bool = True) -> None:
        self.settings = settings
        region = settings.require_region()
        self.boto_session = boto3.Session(region_name=region)
        self.recorder: ApiRecorder | None = None
        if settings.dry_run:
            self.recorder = ApiRecorder()
            self.recorder.attach(self.boto_session)
        elif need_credentials and self.boto_session.get_credentials() is None:
            raise LaunchError(
                "no AWS credentials found: run `aws configure` or `aws sso login`, set "
                "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "or use --dry-run to print the requests without sending them"
            )
        if settings.dry_run or not settings.check_role:
            # The SDK reads this switch; a dry run must not call IAM to simulate policies.
            os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
        self._clients: dict[str, Any] = {}

    @property
    def dry_run(self) -> bool:
        """Whether requests are recorded instead of sent."""
        return self.recorder is not None

    def dry_run_result(self) -> dict[str, Any]:
        """What a command returns after a dry run: the recorded requests."""
        calls = self.recorder.calls if self.recorder is not None else []
        return {"dry_run": True, "requests": [call.as_json() for call in calls]}

    def client(self, service: str) -> Any:
        """A (cached) boto3 client of this session."""
        if service not in self._clients:
            self._clients[service] = self.boto_session.client(service)
        return self._clients[service]
