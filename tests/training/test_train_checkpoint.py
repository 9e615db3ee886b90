"""Checkpoints: a job resumes after the checkpoint's epoch; SIGTERM saves one and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from ncf_test_support import PROGRAMS, REPO_ROOT, SageMakerLayout, run_container_script
from train_support import FAST_HYPERPARAMETERS

from training.synthetic import make_interactions

pytestmark = pytest.mark.slow

CHECKPOINT = "ncf-checkpoint-*.npz"


def _epoch_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("epoch=")]


def test_resume_from_checkpoint(sagemaker_layout: SageMakerLayout) -> None:
    sagemaker_layout.write_channel("train", make_interactions())
    hyperparameters = {**FAST_HYPERPARAMETERS, "early_stopping_patience": 0}
    sagemaker_layout.write_config({**hyperparameters, "epochs": 2})
    first = run_container_script("train", sagemaker_layout.base_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert [line.split()[0] for line in _epoch_lines(first.stdout)] == ["epoch=1", "epoch=2"]
    assert len(list(sagemaker_layout.checkpoint_dir.glob(CHECKPOINT))) == 1

    sagemaker_layout.write_config({**hyperparameters, "epochs": 4})
    second = run_container_script("train", sagemaker_layout.base_dir)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming from checkpoint after epoch 2" in second.stdout
    assert [line.split()[0] for line in _epoch_lines(second.stdout)] == ["epoch=3", "epoch=4"]
    import json

    report = json.loads((sagemaker_layout.output_data_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in report["history"]] == [1, 2, 3, 4]
    assert report["resumed_from_epoch"] == 2


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(sagemaker_layout: SageMakerLayout) -> None:
    sagemaker_layout.write_channel("train", make_interactions())
    sagemaker_layout.write_config(
        {**FAST_HYPERPARAMETERS, "epochs": 500, "early_stopping_patience": 0, "batch_size": 32}
    )
    process = subprocess.Popen(
        PROGRAMS["train"],
        cwd=REPO_ROOT,
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(sagemaker_layout.base_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 300
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("epoch=1 "):
                break
            assert time.monotonic() < deadline, "no epoch ended in time"
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "stopped by SIGTERM" in output
    assert len(list(sagemaker_layout.checkpoint_dir.glob(CHECKPOINT))) == 1
    assert not list(sagemaker_layout.checkpoint_dir.glob("*.tmp*"))
    model_dir = sagemaker_layout.model_dir
    assert not model_dir.exists() or not any(model_dir.iterdir())
    assert not sagemaker_layout.failure_file.exists()

    # The next job (same settings, a smaller epoch budget) resumes where the stopped one left off.
    sagemaker_layout.write_config(
        {**FAST_HYPERPARAMETERS, "epochs": 3, "early_stopping_patience": 0, "batch_size": 32}
    )
    resumed = run_container_script("train", sagemaker_layout.base_dir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from checkpoint after epoch" in resumed.stdout
    assert any(model_dir.iterdir())
