"""``ncf`` in SageMaker local mode, as the Docker tests run it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from launch_constants import PROGRAMS


def ncf_local(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``ncf ARGV`` with its output captured (local mode needs a region, not an account)."""
    return subprocess.run(
        [*PROGRAMS["ncf"], *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1")},
    )


def train_locally(
    image: str, train_dir: Path, output_dir: Path, *more: str
) -> subprocess.CompletedProcess[str]:
    """``ncf train --local`` of ``image`` on ``train_dir``, the artifact under ``output_dir``."""
    return ncf_local(
        "train",
        "--local",
        "--image-uri",
        image,
        "--train",
        str(train_dir),
        "--output-path",
        f"file://{output_dir}",
        *more,
    )
