"""Issue 13 item 1: ``ncf train`` with the region only in ``NCF_REGION``, against a moto server.

Run as a user runs it, in a fresh process: no ``AWS_REGION``, no ``AWS_DEFAULT_REGION``
and no AWS config file, so nothing but ``NCF_REGION`` names the region. The SDK's
log reader used to build its own client from a region-less default session
(``NoRegionError``, exit 1, job left running).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from launch_constants import BUCKET, IMAGE_URI, REGION, ROLE_ARN
from ncf_test_support import PROGRAMS

pytestmark = pytest.mark.slow


def test_train_with_only_ncf_region_set(moto_server, tmp_path) -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "NCF_", "SAGEMAKER_"))
    }
    environment.update(
        {name: value for name, value in moto_server.env.items() if "REGION" not in name}
    )
    environment.update(
        {
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
            "NCF_CONFIG": str(tmp_path / "no-ncf.toml"),
            "NCF_REGION": REGION,
            "NCF_ROLE_ARN": ROLE_ARN,
            "NCF_IMAGE_URI": IMAGE_URI,
            "NCF_BUCKET": BUCKET,
        }
    )
    assert not any("REGION" in name for name in environment if name != "NCF_REGION")
    result = subprocess.run(
        [
            *PROGRAMS["ncf"],
            "train",
            "--train",
            f"s3://{BUCKET}/data/train/",
            "--skip-role-check",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["status"] == "Completed"
    assert f"training job {report['training_job_name']} started in {REGION}" in result.stderr
