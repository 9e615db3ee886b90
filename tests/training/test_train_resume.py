"""A run stopped by SIGTERM mid-epoch and resumed ends with an uninterrupted run's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.config import TrainingConfig
from training.dataset import build_dataset
from training.signals import StopFlag
from training.synthetic import make_interactions
from training.trainer import train

CONFIG = TrainingConfig(
    tuning="off",
    refit=False,
    epochs=3,
    batch_size=32,
    early_stopping_patience=0,
    gmf_dim=8,
    full_ranking=False,
)


def weights_of(result) -> dict[str, np.ndarray]:
    assert result.model is not None
    return result.model.model_weights()


def test_stop_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    dataset = build_dataset(
        make_interactions(num_users=60, num_items=40, interactions_per_user=10), None, None
    )
    uninterrupted = train(CONFIG, dataset, tmp_path / "a", emit=lambda line: None)

    # SIGTERM arrives right after epoch 1 ends: epoch 2 is cut after its first steps.
    stop = StopFlag()
    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        if line.startswith("epoch=1 "):
            stop.set()

    stopped = train(CONFIG, dataset, tmp_path / "b", stop_flag=stop, emit=emit)
    assert stopped.stopped and stopped.model is None
    assert any("stopped by SIGTERM during epoch 2" in line for line in lines)

    resumed_lines: list[str] = []
    resumed = train(CONFIG, dataset, tmp_path / "b", emit=resumed_lines.append)
    assert "resuming from checkpoint after epoch 1" in resumed_lines
    assert [line.split()[0] for line in resumed_lines if line.startswith("epoch=")] == [
        "epoch=2",
        "epoch=3",
    ]
    expected, got = weights_of(uninterrupted), weights_of(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for mine, theirs in zip(resumed.fit.history, uninterrupted.fit.history, strict=True):
        for key in ("epoch", "train_loss", "hr", "ndcg"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4), key


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    dataset = build_dataset(
        make_interactions(num_users=30, num_items=20, interactions_per_user=6), None, None
    )
    train(CONFIG, dataset, tmp_path, emit=lambda line: None)
    lines: list[str] = []
    other = TrainingConfig(**{**CONFIG.to_json(), "mlp_layers": (64, 32, 16), "num_negatives": 2})
    train(other, dataset, tmp_path, emit=lines.append)
    assert not any(line.startswith("resuming") for line in lines)


def test_runs_of_other_settings_keep_their_own_checkpoints(tmp_path: Path) -> None:
    """Parallel tuning trials sharing a checkpoint location never overwrite each other."""
    dataset = build_dataset(
        make_interactions(num_users=30, num_items=20, interactions_per_user=6), None, None
    )
    other = TrainingConfig(**{**CONFIG.to_json(), "learning_rate": 0.01})
    train(CONFIG, dataset, tmp_path, emit=lambda line: None)
    train(other, dataset, tmp_path, emit=lambda line: None)
    assert len(list(tmp_path.glob("ncf-checkpoint-*.npz"))) == 2
    lines: list[str] = []
    train(CONFIG, dataset, tmp_path, emit=lines.append)
    assert "resuming from checkpoint after epoch 3" in lines
