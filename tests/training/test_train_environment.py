"""The /opt/ml environment: files, SAGEMAKER_BASE_DIR and SM_* overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.environment import Environment
from training.errors import ConfigError


def test_from_files(sagemaker_layout) -> None:
    sagemaker_layout.write_config({"epochs": 3, "model_type": "gmf"}, channels=("train", "test"))
    env = Environment.from_environ({"SAGEMAKER_BASE_DIR": str(sagemaker_layout.base_dir)})
    assert env.base_dir == sagemaker_layout.base_dir
    assert env.hyperparameters == {"epochs": 3, "model_type": "gmf", "tuning": "off"}
    assert env.input_mode("train") == "File"
    assert env.current_host == "algo-1" and env.hosts == ("algo-1",)
    assert env.model_dir == sagemaker_layout.model_dir
    assert env.output_data_dir == sagemaker_layout.output_data_dir
    assert env.failure_file == sagemaker_layout.failure_file
    assert env.checkpoint_dir == sagemaker_layout.checkpoint_dir
    assert env.channel_location("train") == sagemaker_layout.channel_dir("train")
    assert env.channel_location("test") == sagemaker_layout.channel_dir("test")
    assert env.channel_location("validation") is None


def test_missing_files_give_an_empty_environment(tmp_path: Path) -> None:
    env = Environment.from_base_dir(tmp_path)
    assert env.hyperparameters == {}
    assert env.channel_location("train") is None


def test_sm_variables_override(sagemaker_layout, tmp_path: Path) -> None:
    sagemaker_layout.write_config({"epochs": 3})
    env = Environment.from_base_dir(
        sagemaker_layout.base_dir,
        {
            "SM_HPS": json.dumps({"epochs": 5, "model_type": "mlp"}),
            "SM_MODEL_DIR": str(tmp_path / "m"),
            "SM_OUTPUT_DATA_DIR": str(tmp_path / "o"),
            "SM_CHANNEL_TRAIN": "s3://bucket/train/",
            "SM_CHANNEL_TEST": str(tmp_path / "t"),
            "SM_CURRENT_HOST": "algo-2",
            "SM_HOSTS": '["algo-1", "algo-2"]',
            "UNRELATED": "x",
        },
    )
    assert env.hyperparameters == {"epochs": 5, "model_type": "mlp", "tuning": "off"}
    assert env.model_dir == tmp_path / "m"
    assert env.output_data_dir == tmp_path / "o"
    assert env.channel_location("train") == "s3://bucket/train/"
    assert env.channel_location("test") == tmp_path / "t"
    assert env.current_host == "algo-2" and env.hosts == ("algo-1", "algo-2")
    assert "UNRELATED" not in env.environ


def test_uri_hyperparameter_wins(tmp_path: Path) -> None:
    env = Environment(base_dir=tmp_path, environ={"SM_CHANNEL_TRAIN": "/elsewhere"})
    assert env.channel_location("train", "s3://b/k") == "s3://b/k"
    assert env.channel_location("train", str(tmp_path / "x")) == tmp_path / "x"


def test_pipe_mode_is_refused(tmp_path: Path) -> None:
    env = Environment(base_dir=tmp_path, input_data_config={"train": {"TrainingInputMode": "Pipe"}})
    with pytest.raises(ConfigError, match="Pipe"):
        env.channel_location("train")


def test_bad_json_is_a_config_error(sagemaker_layout) -> None:
    sagemaker_layout.write_config({})
    (sagemaker_layout.base_dir / "input" / "config" / "hyperparameters.json").write_text("{oops")
    with pytest.raises(ConfigError, match=r"hyperparameters\.json"):
        Environment.from_base_dir(sagemaker_layout.base_dir)
