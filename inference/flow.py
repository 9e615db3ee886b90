"""The request flow: decode -> validate -> one vectorised call per instance kind -> encode."""

from __future__ import annotations

from typing import Any

from inference import content_types
from inference.instances import (
    InstanceRequest,
    RecommendRequest,
    ScoreRequest,
    SimilarRequest,
    parse_instances,
)
from inference.recommender import Recommender

_LABELS = {
    content_types.JSON: "instances",
    content_types.JSONLINES: "line",
    content_types.CSV: "row",
}


def _labels(label: str, count: int) -> list[str]:
    if label == "instances":
        return ["instance"] if count == 1 else [f"instances[{n}]" for n in range(count)]
    return [f"{label} {n}" for n in range(1, count + 1)]


def predict(
    recommender: Recommender, requests: list[InstanceRequest], labels: list[str]
) -> list[dict[str, Any]]:
    """Predictions in request order; all instances of one kind go through one batched call."""
    predictions: list[dict[str, Any] | None] = [None] * len(requests)
    for kind in (RecommendRequest, ScoreRequest, SimilarRequest):
        positions = [n for n, request in enumerate(requests) if isinstance(request, kind)]
        if not positions:
            continue
        batch = [requests[n] for n in positions]
        if kind is RecommendRequest:
            results = recommender.recommend(batch, [labels[n] for n in positions])  # type: ignore[arg-type]
        elif kind is ScoreRequest:
            results = recommender.score(batch)  # type: ignore[arg-type]
        else:
            results = recommender.similar(batch, [labels[n] for n in positions])  # type: ignore[arg-type]
        for n, result in zip(positions, results, strict=True):
            predictions[n] = result
    return predictions  # type: ignore[return-value]


def invoke(
    recommender: Recommender, body: bytes, content_type: str | None, accept: str | None
) -> tuple[bytes, str]:
    """Answer one ``/invocations`` body: ``(response bytes, response content type)``.

    A missing ``Content-Type`` is read as JSON; a missing ``Accept`` answers in the
    request's own type.

    Raises:
        InferenceError: 400 / 406 / 415 with a message naming the problem.
    """
    request_type = content_types.normalise(content_type) or content_types.JSON
    raw_instances = content_types.decode(body, request_type)
    response_type = content_types.negotiate(accept, request_type)
    labels = _labels(_LABELS[request_type], len(raw_instances))
    requests = parse_instances(raw_instances, labels)
    predictions = predict(recommender, requests, labels)
    return content_types.encode(predictions, response_type), response_type
