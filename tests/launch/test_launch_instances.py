"""Image flavour by instance type, multi-instance training, unique names (issue 13 items 7, 10)."""

from __future__ import annotations

import pytest
from dry_run_requests import request_of
from launch_constants import GPU_IMAGE_URI, IMAGE_URI, SETTINGS
from ncf_launch.errors import LaunchError
from ncf_launch.names import check_instance_type, image_for_instance_type, is_gpu, unique_name

from training.cluster import check_train_replicated
from training.errors import ConfigError

TRAIN = ("train", *SETTINGS, "--dry-run", "--train", "s3://ncf-data/train/")
UNTAGGED = IMAGE_URI.removesuffix(":cpu")


@pytest.mark.parametrize(
    ("instance_type", "gpu"),
    [
        ("ml.g4dn.xlarge", True),
        ("ml.g6e.2xlarge", True),
        ("ml.p4de.24xlarge", True),
        ("ml.p3.2xlarge", True),
        ("ml.c5.xlarge", False),
        ("ml.m5.large", False),
        ("ml.inf2.xlarge", False),
    ],
)
def test_gpu_families_are_every_g_and_p_family(instance_type, gpu) -> None:
    assert is_gpu(instance_type) is gpu
    assert check_instance_type(instance_type, local=True) == ("local_gpu" if gpu else "local")


def test_an_untagged_image_gets_the_flavour_of_the_instance() -> None:
    assert image_for_instance_type(UNTAGGED, "ml.g5.xlarge") == f"{UNTAGGED}:gpu"
    assert image_for_instance_type(UNTAGGED, "ml.c5.xlarge") == f"{UNTAGGED}:cpu"
    assert image_for_instance_type(f"{UNTAGGED}:v3", "ml.g5.xlarge") == f"{UNTAGGED}:v3"


def test_the_wrong_flavour_is_refused_with_what_to_pass() -> None:
    with pytest.raises(LaunchError, match=rf"CPU flavour.*pass --image-uri {GPU_IMAGE_URI}"):
        image_for_instance_type(IMAGE_URI, "ml.g4dn.xlarge")
    with pytest.raises(
        LaunchError, match=rf"GPU flavour.*has no GPU: pass --image-uri {IMAGE_URI}"
    ):
        image_for_instance_type(GPU_IMAGE_URI, "ml.c5.xlarge")
    with pytest.raises(LaunchError, match=r"pass --image-uri \S+:v2-gpu"):
        image_for_instance_type(f"{UNTAGGED}:v2-cpu", "ml.p3.2xlarge")


def test_train_on_a_gpu_instance_with_the_cpu_image_fails_before_any_call(ncf, no_credentials):
    result = ncf(*TRAIN, "--instance-type", "ml.g5.xlarge")
    assert result.code == 2
    assert f"pass --image-uri {GPU_IMAGE_URI}" in result.stderr


def test_train_with_an_untagged_image_on_gpu_sends_the_gpu_flavour(ncf, no_credentials):
    result = ncf(*TRAIN, "--instance-type", "ml.g5.xlarge", "--image-uri", UNTAGGED)
    assert result.code == 0, result.stderr
    sent = request_of(result.json(), "CreateTrainingJob")
    assert sent["AlgorithmSpecification"]["TrainingImage"] == f"{UNTAGGED}:gpu"


def test_several_instances_replicate_the_data_and_ask_for_multi_worker(ncf, no_credentials):
    result = ncf(*TRAIN, "--validation", "s3://ncf-data/validation/", "--instance-count", "3")
    assert result.code == 0, result.stderr
    sent = request_of(result.json(), "CreateTrainingJob")
    distribution = {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3DataDistributionType"]
        for channel in sent["InputDataConfig"]
    }
    assert distribution == {"train": "FullyReplicated", "validation": "FullyReplicated"}
    assert sent["HyperParameters"]["distribution"] == "multi_worker_mirrored"
    assert sent["ResourceConfig"]["InstanceCount"] == 3


def test_several_instances_refuse_a_sharded_train_channel_as_training_does(
    ncf, no_credentials
) -> None:
    sharded = ("--s3-distribution", "ShardedByS3Key")
    result = ncf(*TRAIN, "--instance-count", "3", *sharded)
    assert result.code == 2
    # The training job's own FailureReason, word for word (one source: ncf_contract.channels).
    with pytest.raises(ConfigError) as refused:
        check_train_replicated({"train": {"S3DistributionType": "ShardedByS3Key"}})
    assert str(refused.value) in result.stderr
    assert "--s3-distribution FullyReplicated" in result.stderr
    assert ncf(*TRAIN, "--instance-count", "1", *sharded).code == 0


def test_one_instance_sends_no_distribution_hyperparameter(ncf, no_credentials):
    sent = request_of(ncf(*TRAIN).json(), "CreateTrainingJob")
    assert "distribution" not in sent["HyperParameters"]


def test_names_made_in_the_same_millisecond_differ() -> None:
    names = {unique_name("ncf-train") for _ in range(200)}
    assert len(names) == 200
    assert all(len(name) <= 63 for name in names)
