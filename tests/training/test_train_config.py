"""Hyperparameter decoding and the typed training configuration."""

from __future__ import annotations

import pytest

from training.config import TrainingConfig
from training.environment import decode_hyperparameters
from training.errors import ConfigError


def test_decoding_keeps_raw_strings_where_json_fails() -> None:
    decoded = decode_hyperparameters(
        {"epochs": "3", "mlp_layers": "[64, 32]", "pretrain": "true", "model_type": "gmf", "x": 1}
    )
    assert decoded == {
        "epochs": 3,
        "mlp_layers": [64, 32],
        "pretrain": True,
        "model_type": "gmf",
        "x": 1,
    }


def test_defaults_are_valid() -> None:
    config = TrainingConfig.from_hyperparameters({})
    assert config == TrainingConfig()
    assert config.model_type == "auto" and config.family == "gmf"
    assert config.tuning == "auto" and config.searches and config.refit
    assert config.fixed == frozenset()
    assert config.top_k == 10
    assert config.num_eval_negatives == 99


def test_given_hyperparameters_are_fixed_and_not_one_themselves() -> None:
    config = TrainingConfig.from_hyperparameters({"learning_rate": 0.01, "model_type": "gmf"})
    assert config.fixed == {"learning_rate", "model_type"}
    assert "fixed" not in config.to_json()
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        TrainingConfig.from_hyperparameters({"fixed": ["epochs"]})


def test_typed_values_from_sagemaker_strings() -> None:
    raw = {
        "model_type": "mlp",
        "epochs": "7",
        "learning_rate": "0.01",
        "mlp_layers": "[32, 16, 8]",
        "full_ranking": "false",
        "min_rating": "4",
        "train_uri": "s3://bucket/train/",
    }
    config = TrainingConfig.from_hyperparameters(decode_hyperparameters(raw))
    assert config.model_type == "mlp"
    assert config.epochs == 7
    assert config.learning_rate == pytest.approx(0.01)
    assert config.mlp_layers == (32, 16, 8)
    assert config.full_ranking is False
    assert config.min_rating == 4.0
    assert config.train_uri == "s3://bucket/train/"
    assert config.to_json()["mlp_layers"] == [32, 16, 8]


def test_comma_separated_layers_and_sagemaker_reserved_names() -> None:
    config = TrainingConfig.from_hyperparameters(
        {
            "mlp_layers": "64,32",
            "sagemaker_program": "x",
            "_tuning_objective_metric": "validation:hr",
        }
    )
    assert config.mlp_layers == (64, 32)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        TrainingConfig.from_hyperparameters({"epochz": 3})
    message = str(raised.value)
    assert "epochz" in message
    assert "epochs" in message and "model_type" in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("model_type", "deepfm", "one of auto, gmf, mlp, neumf"),
        ("epochs", 0, "integer"),
        ("epochs", "many", "integer"),
        ("batch_size", 2.5, "integer"),
        ("learning_rate", 0, "> 0"),
        ("learning_rate", "fast", "a number"),
        ("dropout", 1.5, "≤ 0.95"),
        ("mlp_layers", [64, -1], "positive integers"),
        ("mlp_layers", [], "positive integers"),
        ("full_ranking", "maybe", "true or false"),
        ("validation_metric", "auc", "hr, ndcg"),
        ("user_column", "", "non-empty string"),
        ("epochs", True, "integer"),
    ],
)
def test_bad_value_names_the_value_and_what_is_allowed(
    name: str, value: object, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        TrainingConfig.from_hyperparameters({name: value})
    message = str(raised.value)
    assert name in message
    assert repr(value) in message
    assert expected in message


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="pretrain"):
        TrainingConfig.from_hyperparameters({"model_type": "gmf", "pretrain": True})
    with pytest.raises(ConfigError, match="even"):
        TrainingConfig.from_hyperparameters({"model_type": "neumf", "mlp_layers": [63, 16]})


def test_config_is_frozen() -> None:
    config = TrainingConfig()
    with pytest.raises(AttributeError):
        config.epochs = 3  # type: ignore[misc]
