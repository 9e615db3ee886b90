"""Reading what ``--dry-run`` printed: the list of ``{"service", "operation", "params"}``."""

from __future__ import annotations

from typing import Any


def operations(requests: list[dict[str, Any]]) -> list[str]:
    """The operation names, in the order they would have been sent."""
    return [request["operation"] for request in requests]


def request_of(requests: list[dict[str, Any]], operation: str) -> dict[str, Any]:
    """The parameters of the one ``operation`` request (fails if there is not exactly one)."""
    (params,) = [r["params"] for r in requests if r["operation"] == operation]
    return params
