"""The launch commands against a moto server: what arrived at the API, read back with boto3.

Moto's SageMaker is partial. Where it accepts a request but drops part of it
(``MetricDefinitions`` of a training job: moto answers a canned list), or lacks
an operation (``UpdateEndpoint``), the test asserts on the request captured at
botocore level on its way out, and says so.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from launch_constants import BUCKET, GPU_IMAGE_URI, IMAGE_URI, ROLE_ARN

from ncf_contract.metric_lines import METRIC_DEFINITIONS, OBJECTIVE_METRIC

pytestmark = pytest.mark.slow

PROJECT_TAG = {"Key": "project", "Value": "ncf-sagemaker"}
TRAIN_ARGS = (
    "--train",
    f"s3://{BUCKET}/data/train/",
    "--validation",
    f"s3://{BUCKET}/data/validation/",
    "--test",
    f"s3://{BUCKET}/data/test/",
    "--test-negatives",
    f"s3://{BUCKET}/data/test_negatives/",
)


def tags_of(sagemaker: Any, arn: str) -> list[dict[str, str]]:
    return sagemaker.list_tags(ResourceArn=arn)["Tags"]


def test_train_request_arrives_complete(launch_env, ncf, captured) -> None:
    result = ncf(
        "train",
        *TRAIN_ARGS,
        "--no-wait",
        "--skip-role-check",
        "--hp",
        "epochs=5",
        "--hp",
        "model_type=neumf",
        "--hp",
        "learning_rate=0.001",
        "--hp",
        "mlp_layers=[64,32,16]",
        "--instance-type",
        "ml.g4dn.xlarge",
        "--image-uri",
        GPU_IMAGE_URI,
        "--instance-count",
        "1",
        "--volume-size",
        "50",
        "--max-runtime",
        "7200",
        "--spot",
        "--max-wait",
        "10800",
        "--checkpoint-s3-uri",
        f"s3://{BUCKET}/checkpoints/run-1/",
        "--input-mode",
        "FastFile",
        "--tag",
        "owner=tests",
    )
    assert result.code == 0, result.stderr
    job_name = result.json()["training_job_name"]
    assert job_name.startswith("ncf-train-")

    sagemaker = launch_env.client("sagemaker")
    job = sagemaker.describe_training_job(TrainingJobName=job_name)
    assert job["AlgorithmSpecification"]["TrainingImage"] == GPU_IMAGE_URI
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "FastFile"
    assert job["RoleArn"] == ROLE_ARN
    # Hyperparameters arrive as strings, JSON-encoded where they are not strings already.
    assert job["HyperParameters"] == {
        "epochs": "5",
        "model_type": "neumf",
        "learning_rate": "0.001",
        "mlp_layers": "[64, 32, 16]",
    }
    channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
    assert set(channels) == {"train", "validation", "test", "test_negatives"}
    for name, channel in channels.items():
        source = channel["DataSource"]["S3DataSource"]
        assert source["S3Uri"] == f"s3://{BUCKET}/data/{name}/"
        assert source["S3DataType"] == "S3Prefix"
        assert channel["InputMode"] == "FastFile"
    assert job["ResourceConfig"] == {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 50,
    }
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800}
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/checkpoints/run-1/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/ncf/output"
    tags = tags_of(sagemaker, job["TrainingJobArn"])
    assert PROJECT_TAG in tags and {"Key": "owner", "Value": "tests"} in tags
    # Moto keeps no MetricDefinitions (it answers a canned list), so check what was sent.
    sent = captured.params("CreateTrainingJob")
    assert sent["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert "ContainerEntrypoint" not in sent["AlgorithmSpecification"]  # our image's own `train`


def test_train_waits_and_reports_metrics_and_artifact(launch_env, ncf) -> None:
    # Moto completes a training job at once, so waiting returns straight away.
    result = ncf("train", "--train", f"s3://{BUCKET}/data/train/", "--skip-role-check")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["status"] == "Completed"
    assert report["model_artifact"].endswith(f"{report['training_job_name']}/output/model.tar.gz")
    assert isinstance(report["final_metrics"], dict)


def test_tune_request_arrives(launch_env, ncf) -> None:
    result = ncf(
        "tune",
        "--train",
        f"s3://{BUCKET}/data/train/",
        "--validation",
        f"s3://{BUCKET}/data/validation/",
        "--skip-role-check",
        "--no-wait",
        "--hp",
        "epochs=10",
        "--range",
        "learning_rate=continuous:0.0005:0.005:log",
        "--range",
        "num_negatives=integer:2:6",
        "--range",
        "gmf_dim=categorical:16|32",
        "--max-jobs",
        "6",
        "--max-parallel-jobs",
        "3",
    )
    assert result.code == 0, result.stderr
    name = result.json()["tuning_job_name"]
    sagemaker = launch_env.client("sagemaker")
    job = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    config = job["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": OBJECTIVE_METRIC,
    }
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 6
    assert config["ResourceLimits"]["MaxParallelTrainingJobs"] == 3
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {
            "Name": "learning_rate",
            "MinValue": "0.0005",
            "MaxValue": "0.005",
            "ScalingType": "Logarithmic",
        }
    ]
    assert ranges["IntegerParameterRanges"][0]["Name"] == "num_negatives"
    assert ranges["CategoricalParameterRanges"] == [{"Name": "gmf_dim", "Values": ["16", "32"]}]
    definition = job["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["TrainingImage"] == IMAGE_URI
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert definition["StaticHyperParameters"] == {"epochs": "10"}
    assert definition["RoleArn"] == ROLE_ARN
    assert {c["ChannelName"] for c in definition["InputDataConfig"]} == {"train", "validation"}
    assert PROJECT_TAG in tags_of(sagemaker, job["HyperParameterTuningJobArn"])


def deploy(ncf, *extra: str) -> dict[str, Any]:
    result = ncf(
        "deploy",
        "--model-data",
        f"s3://{BUCKET}/models/model.tar.gz",
        "--endpoint-name",
        "ncf-tests",
        "--instance-type",
        "ml.c5.xlarge",
        "--workers",
        "2",
        "--timeout",
        "30",
        "--startup-health-check-timeout",
        "300",
        *extra,
    )
    assert result.code == 0, result.stderr
    return result.json()


def test_deploy_creates_model_config_endpoint_and_autoscaling(launch_env, ncf) -> None:
    names = deploy(ncf, "--autoscale-min", "1", "--autoscale-max", "4", "--autoscale-target", "250")
    assert names["action"] == "create"
    sagemaker = launch_env.client("sagemaker")
    model = sagemaker.describe_model(ModelName=names["model_name"])
    assert model["PrimaryContainer"]["Image"] == IMAGE_URI
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/models/model.tar.gz"
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
    }
    assert model["ExecutionRoleArn"] == ROLE_ARN
    config = sagemaker.describe_endpoint_config(EndpointConfigName=names["endpoint_config_name"])
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == names["model_name"]
    assert variant["InstanceType"] == "ml.c5.xlarge"
    assert variant["InitialInstanceCount"] == 1
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 300
    endpoint = sagemaker.describe_endpoint(EndpointName="ncf-tests")
    assert endpoint["EndpointConfigName"] == names["endpoint_config_name"]
    for arn in (model["ModelArn"], config["EndpointConfigArn"], endpoint["EndpointArn"]):
        assert PROJECT_TAG in tags_of(sagemaker, arn)

    autoscaling = launch_env.client("application-autoscaling")
    resource_id = "endpoint/ncf-tests/variant/AllTraffic"
    (target,) = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id]
    )["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    (policy,) = autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id
    )["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert tracking["TargetValue"] == 250
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )

    # Clean up: endpoint, its config, its model and the scalable target go.
    result = ncf("cleanup", "--endpoint-name", "ncf-tests")
    assert result.code == 0, result.stderr
    assert result.json()["deleted"]["models"] == [names["model_name"]]
    assert "ncf-tests" not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    assert names["endpoint_config_name"] not in [
        c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
    ]
    assert names["model_name"] not in [m["ModelName"] for m in sagemaker.list_models()["Models"]]
    assert not autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id]
    )["ScalableTargets"]


def test_deploy_updates_an_existing_endpoint_in_place(launch_env, ncf, captured) -> None:
    """Moto has no UpdateEndpoint: the test answers it at botocore level and checks the request."""
    import ncf_launch.aws as aws_module

    first = deploy(ncf)
    original_init = aws_module.AwsContext.__init__

    def answer_update(model: Any, **_: Any) -> Any:
        if model.name != "UpdateEndpoint":
            return None

        arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ncf-tests"
        return SimpleNamespace(status_code=200, headers={}), {"EndpointArn": arn}

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.boto_session.events.register("before-call.sagemaker.UpdateEndpoint", answer_update)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws_module.AwsContext, "__init__", init)
        second = deploy(ncf, "--no-wait")
    assert second["action"] == "update"
    assert second["endpoint_config_name"] != first["endpoint_config_name"]
    assert captured.params("UpdateEndpoint") == {
        "EndpointName": "ncf-tests",
        "EndpointConfigName": second["endpoint_config_name"],
        "RetainAllVariantProperties": True,
    }
    assert "CreateEndpoint" not in captured.operations()[len(captured.operations()) - 3 :]
    sagemaker = launch_env.client("sagemaker")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=second["endpoint_config_name"])
    assert config["ProductionVariants"][0]["ModelName"] == second["model_name"]
    ncf("cleanup", "--endpoint-name", "ncf-tests")


def test_deploy_takes_the_latest_completed_training_job(launch_env, ncf) -> None:
    trained = ncf("train", "--train", f"s3://{BUCKET}/data/train/", "--skip-role-check").json()
    result = ncf("deploy", "--endpoint-name", "ncf-latest", "--no-wait")
    assert result.code == 0, result.stderr
    names = result.json()
    assert names["model_data"] == trained["model_artifact"]
    ncf("cleanup", "--endpoint-name", "ncf-latest")


def test_batch_transform_request_arrives(launch_env, ncf) -> None:
    result = ncf(
        "batch",
        "--input",
        f"s3://{BUCKET}/batch/in/",
        "--output",
        f"s3://{BUCKET}/batch/out/",
        "--model-data",
        f"s3://{BUCKET}/models/model.tar.gz",
        "--instance-type",
        "ml.m5.large",
        "--instance-count",
        "2",
        "--max-payload",
        "4",
        "--no-wait",
    )
    assert result.code == 0, result.stderr
    report = result.json()
    sagemaker = launch_env.client("sagemaker")
    job = sagemaker.describe_transform_job(TransformJobName=report["transform_job_name"])
    assert job["ModelName"] == report["model_name"]
    assert job["BatchStrategy"] == "MultiRecord"
    assert job["MaxPayloadInMB"] == 4
    assert job["TransformInput"]["ContentType"] == "application/jsonlines"
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{BUCKET}/batch/in/"
    )
    assert job["TransformOutput"] == {
        "S3OutputPath": f"s3://{BUCKET}/batch/out/",
        "Accept": "application/jsonlines",
        "AssembleWith": "Line",
    }
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 2}
    model = sagemaker.describe_model(ModelName=report["model_name"])
    assert model["PrimaryContainer"]["Image"] == IMAGE_URI


def test_list_finds_what_the_project_tagged(launch_env, ncf) -> None:
    names = deploy(ncf, "--no-wait")
    untagged = launch_env.client("sagemaker")
    untagged.create_model(
        ModelName="not-ours",
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": IMAGE_URI},
    )
    result = ncf("list")
    assert result.code == 0, result.stderr
    listed = result.json()
    arns = json.dumps(listed)
    assert names["model_name"] in arns and names["endpoint_config_name"] in arns
    assert "ncf-tests" in " ".join(listed.get("sagemaker:endpoint", []))
    assert "not-ours" not in arns
    ncf("cleanup", "--endpoint-name", "ncf-tests")
