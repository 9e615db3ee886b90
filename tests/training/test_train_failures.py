"""Bad input fails the job with an actionable first line in output/failure and an empty model/."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ncf_test_support import SageMakerLayout, run_container_script

from training.synthetic import make_interactions

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


CASES: dict[str, tuple[Callable[[SageMakerLayout], dict], tuple[str, ...]]] = {
    "missing column": (_missing_column, ("user_id", "customer")),
    "empty channel": (_empty_channel, ("train",)),
    "unreadable file": (_unreadable_file, ("broken.parquet",)),
    "non-numeric rating": (_non_numeric_rating, ("rating", "five")),
    "NaN ids": (_nan_ids, ("item_id",)),
    "too few users": (_too_few_users, ("1 user",)),
    "unknown hyperparameter": (_unknown_hyperparameter, ("epochz", "valid names", "epochs")),
    "bad value": (_bad_value, ("model_type", "deepfm", "gmf, mlp, neumf")),
    "no train channel": (_no_train_channel, ("train", "does not exist")),
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
    sagemaker_layout.write_config({"epochs": 1})
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
