"""Bad input fails the job with an actionable first line in output/failure and an empty model/."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ncf_test_support import SageMakerLayout, run_container_script

from training.synthetic import make_interactions, make_item_attributes

pytestmark = pytest.mark.slow


def _missing_column(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions().rename(columns={"user_id": "customer"}))
    return {}


def _empty_channel(layout: SageMakerLayout) -> dict:
    layout.channel_dir("train").mkdir(parents=True)
    return {}


def _unreadable_file(layout: SageMakerLayout) -> dict:
    path = layout.channel_dir("train") / "broken.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not parquet")
    return {}


def _non_numeric_rating(layout: SageMakerLayout) -> dict:
    frame = make_interactions()
    frame["rating"] = frame["rating"].astype(object)
    frame.loc[3, "rating"] = "five"
    layout.write_channel("train", frame)
    return {}


def _nan_ids(layout: SageMakerLayout) -> dict:
    frame = make_interactions()
    frame.loc[[2, 5], "item_id"] = None
    layout.write_channel("train", frame, name="part.parquet")
    return {}


def _too_few_users(layout: SageMakerLayout) -> dict:
    frame = make_interactions()
    layout.write_channel("train", frame[frame["user_id"] == "u0"])
    return {}


def _unknown_hyperparameter(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions())
    return {"epochz": 3}


def _bad_value(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions())
    return {"model_type": "deepfm"}


def _no_train_channel(layout: SageMakerLayout) -> dict:
    return {}


def _nan_learning_rate(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions())
    return {"learning_rate": "NaN"}


def _nan_regularization(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions())
    return {"gmf_regularization": "NaN"}


def _infinite_learning_rate(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions())
    return {"learning_rate": "Infinity"}


def _infinite_rating(layout: SageMakerLayout) -> dict:
    frame = make_interactions()
    frame.loc[7, "rating"] = float("inf")
    layout.write_channel("train", frame)
    return {"feedback": "explicit"}


def _infinite_timestamp(layout: SageMakerLayout) -> dict:
    frame = make_interactions()
    frame["timestamp"] = frame["timestamp"].astype(float)
    frame.loc[4, "timestamp"] = float("-inf")
    layout.write_channel("train", frame, name="part.parquet")
    return {}


def _duplicate_item_rows(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions())
    items = make_item_attributes()
    layout.write_channel("items", items.iloc[[0, 1, 2, 1]])
    return {}


def _items_without_id_column(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions())
    layout.write_channel("items", make_item_attributes().rename(columns={"item_id": "sku"}))
    return {}


def _undecodable_items(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions())
    path = layout.channel_dir("items") / "movies.dat"
    path.parent.mkdir(parents=True)
    path.write_bytes("i1;Misérables (1995);Drama\n".encode("latin-1"))
    return {"item_columns": ["item_id", "title", "genres"], "attribute_delimiter": ";"}


def _recency_without_timestamps(layout: SageMakerLayout) -> dict:
    layout.write_channel("train", make_interactions().drop(columns="timestamp"))
    return {"recency_half_life": 30}


CASES: dict[str, tuple[Callable[[SageMakerLayout], dict], tuple[str, ...]]] = {
    "duplicate item rows": (_duplicate_item_rows, ("items", "more than one row", "'i1'")),
    "items without id column": (_items_without_id_column, ("items", "item_id", "item_column")),
    "undecodable items": (_undecodable_items, ("movies.dat", "utf-8", "attribute_encoding")),
    "recency without timestamps": (_recency_without_timestamps, ("recency_half_life", "timestamp")),
    "missing column": (_missing_column, ("user_id", "customer")),
    "empty channel": (_empty_channel, ("train",)),
    "unreadable file": (_unreadable_file, ("broken.parquet",)),
    "non-numeric rating": (_non_numeric_rating, ("rating", "five")),
    "NaN ids": (_nan_ids, ("item_id",)),
    "too few users": (_too_few_users, ("1 user",)),
    "unknown hyperparameter": (_unknown_hyperparameter, ("epochz", "valid names", "epochs")),
    "bad value": (_bad_value, ("model_type", "deepfm", "auto, gmf, mlp, neumf")),
    "no train channel": (_no_train_channel, ("train", "does not exist")),
    "NaN learning rate": (_nan_learning_rate, ("learning_rate", "nan", "finite")),
    "NaN regularization": (_nan_regularization, ("gmf_regularization", "nan", "finite")),
    "infinite learning rate": (_infinite_learning_rate, ("learning_rate", "inf", "finite")),
    "infinite rating": (_infinite_rating, ("train", "infinite rating", "[7]")),
    "infinite timestamp": (_infinite_timestamp, ("train", "infinite timestamp", "[4]")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_with_an_actionable_message(
    case: str, sagemaker_layout: SageMakerLayout
) -> None:
    prepare, expected = CASES[case]
    hyperparameters = prepare(sagemaker_layout)
    sagemaker_layout.write_config({"epochs": 1, **hyperparameters})
    result = run_container_script("train", sagemaker_layout.base_dir, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    first_line = sagemaker_layout.failure_file.read_text().splitlines()[0]
    for fragment in expected:
        assert fragment in first_line, first_line
    assert "Traceback" not in sagemaker_layout.failure_file.read_text()
    model_dir = sagemaker_layout.model_dir
    assert not model_dir.exists() or not any(model_dir.iterdir())
    # Bad input is found before TensorFlow loads (it announces oneDNN on import): fails fast.
    assert "oneDNN" not in result.stderr


def test_internal_error_writes_summary_then_traceback(sagemaker_layout: SageMakerLayout) -> None:
    """An unexpected fault: exit 2, a one-line summary first, then the traceback."""
    sagemaker_layout.write_channel("train", make_interactions())
    sagemaker_layout.write_config({"epochs": 1, "tuning": "off"})
    # A model directory that is a file makes publishing fail in an unforeseen way.
    sagemaker_layout.base_dir.joinpath("output").mkdir()
    result = run_container_script(
        "train",
        sagemaker_layout.base_dir,
        extra_env={
            "SM_OUTPUT_DATA_DIR": str(
                sagemaker_layout.base_dir / "input" / "config" / "hyperparameters.json"
            )
        },
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    text = sagemaker_layout.failure_file.read_text()
    assert text.startswith("Internal error: ")
    assert "Traceback" in text
    model_dir = sagemaker_layout.model_dir
    assert not model_dir.exists() or not any(model_dir.iterdir())


def test_a_diverging_loss_fails_the_job_and_publishes_nothing(
    sagemaker_layout: SageMakerLayout,
) -> None:
    frame = make_interactions()
    frame["rating"] = 1e30  # finite ratings whose squared error overflows float32
    sagemaker_layout.write_channel("train", frame)
    sagemaker_layout.write_config(
        {"epochs": 2, "feedback": "explicit", "batch_size": 512, "tuning": "off"}
    )
    result = run_container_script("train", sagemaker_layout.base_dir, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    first_line = sagemaker_layout.failure_file.read_text().splitlines()[0]
    assert "training diverged" in first_line and "learning_rate" in first_line
    model_dir = sagemaker_layout.model_dir
    assert not model_dir.exists() or not any(model_dir.iterdir())


def test_invalid_hyperparameters_json_fails_under_the_base_dir(
    sagemaker_layout: SageMakerLayout,
) -> None:
    sagemaker_layout.write_channel("train", make_interactions())
    config_dir = sagemaker_layout.base_dir / "input" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "hyperparameters.json").write_text("{not json")
    result = run_container_script("train", sagemaker_layout.base_dir, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "hyperparameters.json" in sagemaker_layout.failure_file.read_text()
