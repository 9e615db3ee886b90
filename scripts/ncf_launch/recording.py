"""Dry runs: record every AWS request at botocore level and answer it without sending it.

A handler on ``before-parameter-build`` keeps the final API parameters (after
botocore's own handlers ran); one on ``before-call`` — which fires after the
parameters were validated against the service model and serialised, and just
before signing — records ``(service, operation, params)`` and returns a canned
response, so nothing is signed or sent. What ``--dry-run`` prints is therefore
exactly what the SDK or boto3 would have sent, and it needs no credentials.

Canned answers keep the SDK's own follow-up calls working: a ``Describe*`` of
something created in the same run echoes its request back, a ``Describe*`` of
anything else says it does not exist (a dry run shows the create path), lists
are empty, and a few reads the SDK needs (the caller identity) are answered
with placeholders.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

DRY_RUN_ACCOUNT = "000000000000"


@dataclass(frozen=True)
class RecordedCall:
    """One request that would have been sent."""

    service: str
    operation: str
    params: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The call as printed by ``--dry-run``."""
        return {"service": self.service, "operation": self.operation, "params": self.params}


class _FakeHttpResponse:
    """The one attribute botocore reads from a short-circuited response."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if hasattr(value, "read"):  # a streaming body
        return "<stream>"
    return value


@dataclass
class ApiRecorder:
    """Attach to a boto3 session; every client made from it afterwards is recorded."""

    calls: list[RecordedCall] = field(default_factory=list)

    def attach(self, boto_session: Any) -> None:
        """Register the handlers; call before creating any client from ``boto_session``."""
        events = boto_session.events
        events.register("before-parameter-build", self._keep_params)
        events.register("before-call", self._answer)

    def _keep_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["ncf_api_params"] = copy.deepcopy(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict]:
        service = model.service_model.service_name
        operation = model.name
        params = _jsonable(context.get("ncf_api_params", {}))
        self.calls.append(RecordedCall(service, operation, params))
        status, body = self._canned(service, operation, params)
        body.setdefault("ResponseMetadata", {"HTTPStatusCode": status, "RequestId": "dry-run"})
        return _FakeHttpResponse(status), body

    # --- canned responses ---------------------------------------------------------------

    def _created(self, operation: str, key: str, name: str) -> dict[str, Any] | None:
        for call in reversed(self.calls):
            if call.operation == operation and call.params.get(key) == name:
                return call.params
        return None

    def _canned(  # noqa: PLR0911 - one answer per kind of call
        self, service: str, operation: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        now = dt.datetime.now(dt.UTC)
        if service == "sts" and operation == "GetCallerIdentity":
            return 200, {
                "Account": DRY_RUN_ACCOUNT,
                "Arn": f"arn:aws:iam::{DRY_RUN_ACCOUNT}:user/dry-run",
                "UserId": "DRYRUN",
            }
        if service == "sagemaker" and operation.startswith("Create"):
            kind = operation.removeprefix("Create")
            return 200, {f"{kind}Arn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:{kind}/x"}
        if service == "sagemaker" and operation == "DescribeTrainingJob":
            name = params["TrainingJobName"]
            created = self._created("CreateTrainingJob", "TrainingJobName", name)
            if created is None:
                # An existing job named on the command line: assume it completed.
                return 200, {
                    "TrainingJobName": name,
                    "TrainingJobArn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:job/{name}",
                    "TrainingJobStatus": "Completed",
                    "SecondaryStatus": "Completed",
                    "ModelArtifacts": {
                        "S3ModelArtifacts": f"s3://dry-run/{name}/output/model.tar.gz"
                    },
                    "AlgorithmSpecification": {"TrainingInputMode": "File"},
                    "CreationTime": now,
                    "StoppingCondition": {},
                    "ResourceConfig": {"VolumeSizeInGB": 1},
                }
            return 200, {
                **created,
                "TrainingJobArn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:job/{name}",
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Starting",
                "CreationTime": now,
            }
        if service == "sagemaker" and operation == "DescribeHyperParameterTuningJob":
            name = params["HyperParameterTuningJobName"]
            created = self._created(
                "CreateHyperParameterTuningJob", "HyperParameterTuningJobName", name
            )
            arn = f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:hyper-parameter-tuning-job/{name}"
            if created is not None:
                return 200, {
                    **created,
                    "HyperParameterTuningJobArn": arn,
                    "HyperParameterTuningJobStatus": "InProgress",
                    "CreationTime": now,
                    "TrainingJobStatusCounters": {},
                    "ObjectiveStatusCounters": {},
                }
            # An existing job named on the command line (--best-of): assume it completed.
            best = f"{name}-001-dryrun00"
            return 200, {
                "HyperParameterTuningJobName": name,
                "HyperParameterTuningJobArn": arn,
                "HyperParameterTuningJobConfig": {
                    "Strategy": "Bayesian",
                    "ResourceLimits": {"MaxParallelTrainingJobs": 1},
                },
                "HyperParameterTuningJobStatus": "Completed",
                "CreationTime": now,
                "TrainingJobStatusCounters": {},
                "ObjectiveStatusCounters": {},
                "BestTrainingJob": {
                    "TrainingJobName": best,
                    "TrainingJobArn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:job/{best}",
                    "CreationTime": now,
                    "TrainingJobStatus": "Completed",
                    "TunedHyperParameters": {},
                },
            }
        if operation.startswith(("Describe", "Get")) and service == "sagemaker":
            return 400, {
                "Error": {"Code": "ValidationException", "Message": "Could not find (dry run)"}
            }
        empty_lists = {
            "ListTrainingJobs": "TrainingJobSummaries",
            "ListEndpoints": "Endpoints",
            "DescribeScalableTargets": "ScalableTargets",
            "GetResources": "ResourceTagMappingList",
        }
        if operation in empty_lists:
            return 200, {empty_lists[operation]: []}
        return 200, {}

    def to_json(self) -> str:
        """The recorded calls as a JSON array (what ``--dry-run`` prints)."""
        return json.dumps([call.as_json() for call in self.calls], indent=2, default=str)
