"""``ncf invoke``: one request to an endpoint, recommendations printed readably.

The local-mode endpoint is called by :func:`ncf_launch.local.invoke_local`.

The request format is the serving container's (issue 3): ``{"user_id": "42", "k": 10}``
or ``{"instances": [...]}``; the answer is ``{"predictions": [...]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ncf_launch.aws import AwsContext
from ncf_launch.errors import LaunchError
from ncf_launch.settings import Settings


def build_body(
    payload_file: str | None, user_id: str | None, item_id: str | None, k: int
) -> dict[str, Any]:
    """The JSON request from a file, or one instance from ``--user-id`` / ``--item-id``."""
    if payload_file:
        try:
            return json.loads(Path(payload_file).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise LaunchError(f"--payload {payload_file}: {error}") from error
    if user_id is not None:
        return {"user_id": str(user_id), "k": k}
    if item_id is not None:
        return {"item_id": str(item_id), "k": k}
    raise LaunchError("nothing to send: pass --user-id, --item-id or --payload FILE")


def format_predictions(response: dict[str, Any]) -> str:
    """A short table per prediction: rank, item, score (and the fallback, if any)."""
    lines = []
    for prediction in response.get("predictions", []):
        if "user_id" in prediction and "items" in prediction:
            title = f"user {prediction['user_id']}"
        elif "item_id" in prediction:
            title = f"items similar to {prediction['item_id']}"
        else:
            title = f"user {prediction.get('user_id')}"
        if prediction.get("fallback"):
            title += f"  (fallback: {prediction['fallback']})"
        lines.append(title)
        if "items" in prediction:
            lines.append(f"  {'rank':>4}  {'item':<16} score")
            for rank, item in enumerate(prediction["items"], start=1):
                lines.append(f"  {rank:>4}  {item['item_id']!s:<16} {item['score']:.4f}")
        elif "scores" in prediction:
            lines.append(f"  scores: {prediction['scores']}")
    return "\n".join(lines) if lines else json.dumps(response, indent=2)


def run_invoke(settings: Settings, endpoint_name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Send ``body`` as application/json to the endpoint and return the decoded answer."""
    context = AwsContext(settings)
    response = context.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint_name,
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(body),
    )
    if context.dry_run:
        return context.dry_run_result()
    return json.loads(response["Body"].read())
