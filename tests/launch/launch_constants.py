"""Names shared by the launch tests (moto's default account and region)."""

from __future__ import annotations

import os

from ncf_test_support import PROGRAMS, REPO_ROOT, free_port

__all__ = [
    "ACCOUNT",
    "BUCKET",
    "IMAGE_URI",
    "PROGRAMS",
    "REGION",
    "REPO_ROOT",
    "ROLE_ARN",
    "SETTINGS",
    "TEST_IMAGE",
    "free_port",
]  # re-exported

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ncf-sagemaker"
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ncf-sagemaker:cpu"
BUCKET = "ncf-launch-tests"
#: The image the Docker tests build (the same tag and build args as tests/container, if any).
TEST_IMAGE = os.environ.get("NCF_TEST_IMAGE", "ncf-sagemaker:test")
#: The account settings every ``ncf`` command needs, as command-line flags.
SETTINGS = (
    "--region",
    REGION,
    "--role-arn",
    ROLE_ARN,
    "--image-uri",
    IMAGE_URI,
    "--bucket",
    BUCKET,
)
#: The GPU flavour of the image, for ml.g*/ml.p* instances.
GPU_IMAGE_URI = IMAGE_URI.removesuffix(":cpu") + ":gpu"
