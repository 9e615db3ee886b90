"""Errors that carry their HTTP status; the app turns each into ``{"error": "..."}``."""

from __future__ import annotations


class InferenceError(Exception):
    """A request the server refuses, with the HTTP status to answer it with.

    Attributes:
        status: HTTP status code (400, 406, 413, 415, ...).
        message: What was wrong, naming the field and the value received.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> InferenceError:
    """A 400: the payload is malformed or a field has a bad value."""
    return InferenceError(400, message)
