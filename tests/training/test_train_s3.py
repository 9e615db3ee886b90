"""The train channel read from s3:// on a moto server (the container run outside SageMaker)."""

from __future__ import annotations

import io

import pytest
from ncf_test_support import MotoServer, SageMakerLayout, run_container_script
from train_support import FAST_HYPERPARAMETERS

from ncf_contract.model_dir import load_model_dir
from training.synthetic import make_interactions

pytestmark = pytest.mark.slow


def test_train_channel_from_s3(moto_server: MotoServer, sagemaker_layout: SageMakerLayout) -> None:
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="ncf-train-data")
    frame = make_interactions()
    half = len(frame) // 2
    for index, part in enumerate((frame.iloc[:half], frame.iloc[half:])):
        body = io.StringIO()
        part.to_csv(body, index=False)
        s3.put_object(
            Bucket="ncf-train-data", Key=f"interactions/day={index}/part.csv", Body=body.getvalue()
        )
    sagemaker_layout.write_config(
        {**FAST_HYPERPARAMETERS, "epochs": 1, "train_uri": "s3://ncf-train-data/interactions/"}
    )
    result = run_container_script("train", sagemaker_layout.base_dir, extra_env=moto_server.env)
    assert result.returncode == 0, result.stdout + result.stderr
    artifacts = load_model_dir(sagemaker_layout.model_dir)
    assert artifacts.num_users == frame["user_id"].nunique()
    assert artifacts.metadata.data["train_interactions"] + artifacts.metadata.data[
        "validation_interactions"
    ] == len(frame)
