"""The learning-rate schedule: decayed once per epoch, continued the same way after a resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ncf_test_support import single_fit_config

pytest.importorskip("keras")

from training.config import TrainingConfig
from training.dataset import build_dataset
from training.families.ncf import FittedNcf
from training.synthetic import make_interactions
from training.trainer import train


def final_learning_rate(config: TrainingConfig, checkpoint_dir: Path) -> float:
    interactions = make_interactions(num_users=40, num_items=30, interactions_per_user=8)
    dataset = build_dataset(interactions, None, None, seed=config.seed)
    result = train(config, dataset, checkpoint_dir, emit=lambda line: None)
    assert isinstance(result.model, FittedNcf)
    return float(np.asarray(result.model.keras_model.optimizer.learning_rate))


def test_learning_rate_decays_per_epoch_and_resumes_on_schedule(tmp_path: Path) -> None:
    settings = {"learning_rate": 0.01, "learning_rate_decay": 0.5, "early_stopping_patience": 0}
    two = single_fit_config({**settings, "epochs": 2})
    # Epoch e trains at lr * decay ** (e - 1): the last of two epochs at 0.01 * 0.5.
    assert final_learning_rate(two, tmp_path) == pytest.approx(0.005)
    # Resumed from the two-epoch checkpoint, epochs 3 and 4 continue the schedule.
    four = single_fit_config({**settings, "epochs": 4})
    assert final_learning_rate(four, tmp_path) == pytest.approx(0.01 * 0.5**3)
