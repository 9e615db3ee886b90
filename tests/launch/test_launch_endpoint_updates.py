"""In-place endpoint updates as SageMaker plays them (issue 13 items 3, 6c and 10g).

Moto has no ``UpdateEndpoint`` rollback, no endpoint FailureReason and no
autoscaling policies, so these scenarios run on stubbed real botocore clients
(``stubbed_aws``): every request is checked against the service model, and the
stubs assert the exact requests that restore autoscaling and delete what an
update left behind.
"""

from __future__ import annotations

from typing import Any

import pytest
from launch_constants import ACCOUNT, REGION, SETTINGS
from stubbed_aws import ANY, StubbedAws, endpoint_description

ENDPOINT = "ncf-endpoint"
OLD_CONFIG = "ncf-endpoint-config-20250101-000000-000-aaaa"
OLD_MODEL = "ncf-model-20250101-000000-000-bbbb"
DEPLOY = ("deploy", *SETTINGS, "--model-data", "s3://ncf-data/m/model.tar.gz")
RESOURCE_ID = f"endpoint/{ENDPOINT}/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
PROJECT_TAGS = {"Tags": [{"Key": "project", "Value": "ncf-sagemaker"}]}
OLD_POLICY = {
    "PolicyName": "hand-made-policy",
    "ServiceNamespace": "sagemaker",
    "ResourceId": RESOURCE_ID,
    "ScalableDimension": DIMENSION,
    "PolicyType": "TargetTrackingScaling",
    "TargetTrackingScalingPolicyConfiguration": {
        "TargetValue": 4200.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleInCooldown": 600,
        "ScaleOutCooldown": 30,
    },
}
#: The target and policy as they were before the update: what must be registered again.
OLD_TARGET_REQUEST = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": RESOURCE_ID,
    "ScalableDimension": DIMENSION,
    "MinCapacity": 2,
    "MaxCapacity": 6,
}


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def queue_start_of_update(
    stubbed: StubbedAws, autoscaling: bool, update_refused: str | None = None
) -> None:
    """The endpoint exists on OLD_CONFIG; a new model and config are made; autoscaling removed."""
    stubbed.add(
        "sagemaker", "describe_endpoint", endpoint_description(ENDPOINT, "InService", OLD_CONFIG, 4)
    )
    stubbed.add("sagemaker", "create_model", {"ModelArn": arn("model", "new")})
    stubbed.add(
        "sagemaker", "create_endpoint_config", {"EndpointConfigArn": arn("endpoint-config", "new")}
    )
    targets: list[dict[str, Any]] = []
    if autoscaling:
        targets = [
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": RESOURCE_ID,
                "ScalableDimension": DIMENSION,
                "MinCapacity": 2,
                "MaxCapacity": 6,
                "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling",
                "CreationTime": "2025-01-01T00:00:00Z",
            }
        ]
    stubbed.add(
        "application-autoscaling",
        "describe_scalable_targets",
        {"ScalableTargets": targets},
        {"ServiceNamespace": "sagemaker", "ResourceIds": [RESOURCE_ID]},
    )
    if autoscaling:
        stubbed.add(
            "application-autoscaling",
            "describe_scaling_policies",
            {
                "ScalingPolicies": [
                    {
                        **OLD_POLICY,
                        "PolicyARN": "arn:aws:autoscaling:policy/hand-made-policy",
                        "CreationTime": "2025-01-01T00:00:00Z",
                        "Alarms": [],
                    }
                ]
            },
        )
        stubbed.add(
            "application-autoscaling",
            "deregister_scalable_target",
            {},
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": RESOURCE_ID,
                "ScalableDimension": DIMENSION,
            },
        )
    if update_refused:
        stubbed.add_error("sagemaker", "update_endpoint", "ValidationException", update_refused)
    else:
        stubbed.add("sagemaker", "update_endpoint", {"EndpointArn": arn("endpoint", ENDPOINT)})


def queue_final_state(stubbed: StubbedAws, description: dict[str, Any]) -> None:
    """What the waiter and the check after it read."""
    stubbed.add("sagemaker", "describe_endpoint", description)
    stubbed.add("sagemaker", "describe_endpoint", description)


def queue_old_autoscaling_restored(stubbed: StubbedAws) -> None:
    stubbed.add("application-autoscaling", "register_scalable_target", {}, OLD_TARGET_REQUEST)
    stubbed.add(
        "application-autoscaling",
        "put_scaling_policy",
        {"PolicyARN": "arn:aws:autoscaling:policy/hand-made-policy", "Alarms": []},
        OLD_POLICY,
    )


def queue_previous_config_read(stubbed: StubbedAws, ours: bool = True) -> None:
    """The previous config and its model are read, then deleted when ``ours`` (project tag)."""
    tags = PROJECT_TAGS if ours else {"Tags": [{"Key": "team", "Value": "x"}]}
    stubbed.add(
        "sagemaker",
        "describe_endpoint_config",
        {
            "EndpointConfigName": OLD_CONFIG,
            "EndpointConfigArn": arn("endpoint-config", OLD_CONFIG),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": OLD_MODEL}],
            "CreationTime": "2025-01-01T00:00:00Z",
        },
        {"EndpointConfigName": OLD_CONFIG},
    )
    stubbed.add("sagemaker", "list_tags", tags, {"ResourceArn": arn("endpoint-config", OLD_CONFIG)})
    if ours:
        stubbed.add("sagemaker", "delete_endpoint_config", {}, {"EndpointConfigName": OLD_CONFIG})
    stubbed.add(
        "sagemaker",
        "describe_model",
        {
            "ModelName": OLD_MODEL,
            "ModelArn": arn("model", OLD_MODEL),
            "CreationTime": "2025-01-01T00:00:00Z",
        },
        {"ModelName": OLD_MODEL},
    )
    stubbed.add("sagemaker", "list_tags", tags, {"ResourceArn": arn("model", OLD_MODEL)})
    if ours:
        stubbed.add("sagemaker", "delete_model", {}, {"ModelName": OLD_MODEL})


@pytest.fixture(autouse=True)
def _new_config_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The config name the update moves to, fixed so the final description can name it."""
    import ncf_launch.deploy

    monkeypatch.setattr(ncf_launch.deploy, "unique_name", lambda base: f"{base}-new")


NEW_CONFIG = f"{ENDPOINT}-config-new"


def test_a_successful_update_restores_autoscaling_and_deletes_the_old_config(
    stubbed_aws, ncf
) -> None:
    queue_start_of_update(stubbed_aws, autoscaling=True)
    queue_final_state(stubbed_aws, endpoint_description(ENDPOINT, "InService", NEW_CONFIG, 4))
    queue_previous_config_read(stubbed_aws)
    queue_old_autoscaling_restored(stubbed_aws)
    result = ncf(*DEPLOY)
    assert result.code == 0, result.stderr
    report = result.json()
    assert (report["action"], report["status"]) == ("update", "InService")
    assert report["deleted"] == [OLD_CONFIG, OLD_MODEL]
    stubbed_aws.assert_done()


ROLLED_BACK = "The primary container for production variant AllTraffic did not pass the ping check."
FAILED = "Failed to download model data for container AllTraffic: access denied"


@pytest.mark.parametrize(
    ("final_status", "expected_error"),
    [
        # SageMaker rolls a failed blue/green update back: InService, on the OLD config.
        (
            "InService",
            f"endpoint update {ENDPOINT} ended rolled back to {OLD_CONFIG}: {ROLLED_BACK}",
        ),
        # The waiter stops at the terminal Failed state; then the command reads the reason.
        ("Failed", f"endpoint {ENDPOINT} ended Failed: {FAILED}"),
    ],
    ids=["rolled-back", "failed"],
)
def test_a_failed_update_says_why_exits_1_and_restores_autoscaling(
    stubbed_aws, ncf, final_status, expected_error
) -> None:
    reason = ROLLED_BACK if final_status == "InService" else FAILED
    queue_start_of_update(stubbed_aws, autoscaling=True)
    queue_final_state(
        stubbed_aws, endpoint_description(ENDPOINT, final_status, OLD_CONFIG, 4, reason=reason)
    )
    queue_old_autoscaling_restored(stubbed_aws)
    result = ncf(*DEPLOY)
    assert result.code == 1
    assert result.stdout == ""
    assert f"error: {expected_error}" in result.stderr
    assert "Traceback" not in result.stderr and "Waiter" not in result.stderr
    stubbed_aws.assert_done()  # the old config is kept: the endpoint still runs it


def test_a_refused_update_request_restores_autoscaling(stubbed_aws, ncf) -> None:
    queue_start_of_update(
        stubbed_aws, autoscaling=True, update_refused="Cannot update in-progress endpoint"
    )
    queue_old_autoscaling_restored(stubbed_aws)
    result = ncf(*DEPLOY)
    assert result.code == 1
    assert "Cannot update in-progress endpoint" in result.stderr
    stubbed_aws.assert_done()


def test_new_autoscaling_settings_replace_the_old_after_a_successful_update(
    stubbed_aws, ncf
) -> None:
    queue_start_of_update(stubbed_aws, autoscaling=True)
    queue_final_state(stubbed_aws, endpoint_description(ENDPOINT, "InService", NEW_CONFIG, 4))
    stubbed_aws.add(
        "application-autoscaling",
        "register_scalable_target",
        {},
        {**OLD_TARGET_REQUEST, "MinCapacity": 3, "MaxCapacity": 9},
    )
    stubbed_aws.add(
        "application-autoscaling",
        "put_scaling_policy",
        {"PolicyARN": "arn:aws:autoscaling:policy/new", "Alarms": []},
        {
            "PolicyName": f"{ENDPOINT}-invocations-per-instance",
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE_ID,
            "ScalableDimension": DIMENSION,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": ANY,
        },
    )
    queue_previous_config_read(stubbed_aws)
    result = ncf(*DEPLOY, "--autoscale-min", "3", "--autoscale-max", "9")
    assert result.code == 0, result.stderr
    stubbed_aws.assert_done()


def test_an_update_without_autoscaling_deletes_only_what_this_project_made(
    stubbed_aws, ncf
) -> None:
    queue_start_of_update(stubbed_aws, autoscaling=False)
    queue_final_state(stubbed_aws, endpoint_description(ENDPOINT, "InService", NEW_CONFIG))
    queue_previous_config_read(stubbed_aws, ours=False)
    result = ncf(*DEPLOY)
    assert result.code == 0, result.stderr
    assert result.json()["deleted"] == []
    stubbed_aws.assert_done()


def test_no_wait_is_refused_before_any_change_when_autoscaling_must_come_back(
    stubbed_aws, ncf
) -> None:
    stubbed_aws.add(
        "sagemaker", "describe_endpoint", endpoint_description(ENDPOINT, "InService", OLD_CONFIG, 4)
    )
    stubbed_aws.add(
        "application-autoscaling",
        "describe_scalable_targets",
        {
            "ScalableTargets": [
                {
                    **OLD_TARGET_REQUEST,
                    "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/autoscaling",
                    "CreationTime": "2025-01-01T00:00:00Z",
                }
            ]
        },
    )
    stubbed_aws.add("application-autoscaling", "describe_scaling_policies", {"ScalingPolicies": []})
    result = ncf(*DEPLOY, "--no-wait")
    assert result.code == 2
    assert "has autoscaling" in result.stderr and "drop --no-wait" in result.stderr
    stubbed_aws.assert_done()  # no model, config or update was made


def test_a_new_endpoint_that_fails_says_why(stubbed_aws, ncf) -> None:
    reason = "Image 123456789012.dkr.ecr.us-east-1.amazonaws.com/ncf-sagemaker:cpu does not exist"
    stubbed_aws.add_error(
        "sagemaker", "describe_endpoint", "ValidationException", "Could not find endpoint"
    )
    stubbed_aws.add("sagemaker", "create_model", {"ModelArn": arn("model", "new")})
    stubbed_aws.add(
        "sagemaker", "create_endpoint_config", {"EndpointConfigArn": arn("endpoint-config", "new")}
    )
    stubbed_aws.add("sagemaker", "create_endpoint", {"EndpointArn": arn("endpoint", ENDPOINT)})
    queue_final_state(
        stubbed_aws, endpoint_description(ENDPOINT, "Failed", NEW_CONFIG, reason=reason)
    )
    result = ncf(*DEPLOY)
    assert result.code == 1
    assert f"error: endpoint {ENDPOINT} ended Failed: {reason}" in result.stderr
    stubbed_aws.assert_done()


def test_cleanup_orphans_deletes_only_unused_project_configs_and_models(stubbed_aws, ncf) -> None:
    """A rolled-back update leaves its config and model; a batch job leaves its model."""
    in_use_config, in_use_model = "ncf-endpoint-config-live", "ncf-model-live"
    batch_model, orphan_config, orphan_model = (
        "ncf-model-batch",
        "ncf-endpoint-config-x",
        "ncf-model-x",
    )
    stubbed_aws.add(
        "sagemaker",
        "list_endpoints",
        {
            "Endpoints": [
                {
                    "EndpointName": ENDPOINT,
                    "EndpointArn": arn("endpoint", ENDPOINT),
                    "CreationTime": "2025-01-01T00:00:00Z",
                    "LastModifiedTime": "2025-01-01T00:00:00Z",
                    "EndpointStatus": "InService",
                }
            ]
        },
    )
    stubbed_aws.add(
        "sagemaker",
        "describe_endpoint",
        endpoint_description(ENDPOINT, "InService", in_use_config),
        {"EndpointName": ENDPOINT},
    )
    stubbed_aws.add(
        "sagemaker",
        "describe_endpoint_config",
        {
            "EndpointConfigName": in_use_config,
            "EndpointConfigArn": arn("endpoint-config", in_use_config),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": in_use_model}],
            "CreationTime": "2025-01-01T00:00:00Z",
        },
        {"EndpointConfigName": in_use_config},
    )
    stubbed_aws.add(
        "sagemaker",
        "list_transform_jobs",
        {
            "TransformJobSummaries": [
                {
                    "TransformJobName": "ncf-batch-1",
                    "TransformJobArn": arn("transform-job", "ncf-batch-1"),
                    "CreationTime": "2025-01-01T00:00:00Z",
                    "TransformJobStatus": "InProgress",
                }
            ]
        },
        {"StatusEquals": "InProgress"},
    )
    stubbed_aws.add(
        "sagemaker",
        "describe_transform_job",
        {
            "TransformJobName": "ncf-batch-1",
            "TransformJobArn": arn("transform-job", "ncf-batch-1"),
            "TransformJobStatus": "InProgress",
            "ModelName": batch_model,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}
            },
            "TransformResources": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
            "CreationTime": "2025-01-01T00:00:00Z",
        },
    )
    project_filter = [{"Key": "project", "Values": ["ncf-sagemaker"]}]
    stubbed_aws.add(
        "resourcegroupstaggingapi",
        "get_resources",
        {
            "ResourceTagMappingList": [
                {"ResourceARN": arn("endpoint-config", in_use_config)},
                {"ResourceARN": arn("endpoint-config", orphan_config)},
            ]
        },
        {"TagFilters": project_filter, "ResourceTypeFilters": ["sagemaker:endpoint-config"]},
    )
    stubbed_aws.add(
        "sagemaker", "delete_endpoint_config", {}, {"EndpointConfigName": orphan_config}
    )
    stubbed_aws.add(
        "resourcegroupstaggingapi",
        "get_resources",
        {
            "ResourceTagMappingList": [
                {"ResourceARN": arn("model", name)}
                for name in (in_use_model, batch_model, orphan_model)
            ]
        },
        {"TagFilters": project_filter, "ResourceTypeFilters": ["sagemaker:model"]},
    )
    stubbed_aws.add("sagemaker", "delete_model", {}, {"ModelName": orphan_model})
    result = ncf("cleanup", *SETTINGS, "--orphans-only")
    assert result.code == 0, result.stderr
    assert result.json() == {
        "orphans": {"endpoint_configs": [orphan_config], "models": [orphan_model]}
    }
    stubbed_aws.assert_done()
