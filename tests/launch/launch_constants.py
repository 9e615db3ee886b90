"""Names shared by the launch tests (moto's default account and region)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ncf-sagemaker"
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ncf-sagemaker:cpu"
BUCKET = "ncf-launch-tests"
#: The image the Docker tests build (the same tag and build args as tests/container, if any).
TEST_IMAGE = os.environ.get("NCF_TEST_IMAGE", "ncf-sagemaker:test")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
