"""Content types, and the decoders and encoders behind ``decode`` / ``encode``.

Supported for both ``Content-Type`` and ``Accept``:

- ``application/json``: one instance object, or ``{"instances": [...]}``; the
  answer is ``{"predictions": [...]}``.
- ``application/jsonlines``: one instance object per line (blank lines are
  skipped); the answer has one prediction per line, in input order.
- ``text/csv``: one ``user_id[,k]`` row per top-k request (an optional header
  row whose first cell is ``user_id`` is skipped); the answer has one row per
  input row: ``user_id,item_1,...,item_k`` (score requests give
  ``user_id,score_1,...``, similar items ``item_id,item_1,...``).

A decoder returns a list of raw instances (validated later by ``instances``);
an encoder takes the list of prediction dicts and returns bytes.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable
from typing import Any

from inference.errors import InferenceError, bad_request

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"

#: Content types we read and write, in order of preference for ``Accept: */*``.
SUPPORTED = (JSON, JSONLINES, CSV)
#: What JSON counts as whitespace (RFC 8259); a trailing ``\r`` of a CRLF line is among it.
JSON_WHITESPACE = " \t\r\n"
#: Other spellings seen in the wild for the same types.
ALIASES = {"application/x-jsonlines": JSONLINES, "application/jsonl": JSONLINES}

try:  # orjson is ~5x faster at dumps; the plain json module is the fallback.
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def _loads(data: bytes | str) -> Any:
        return json.loads(data)

    _JSON_ERRORS = (json.JSONDecodeError, UnicodeDecodeError, RecursionError)


def normalise(content_type: str | None) -> str:
    """The bare, lower-case media type (``"application/json; charset=utf-8"`` -> JSON)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return ALIASES.get(media_type, media_type)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")  # a leading byte-order mark is not part of an id
    except UnicodeDecodeError as error:
        raise bad_request(f"body is not valid UTF-8: {error}") from error


def _parse_json(text: bytes | str, where: str) -> Any:
    try:
        return _loads(text)
    except _JSON_ERRORS as error:
        raise bad_request(f"{where} is not valid JSON: {error}") from error
    except RecursionError as error:  # orjson limits depth itself; json may recurse
        raise bad_request(f"{where} is nested too deeply") from error


def decode_json(body: bytes) -> list[Any]:
    """One instance or ``{"instances": [...]}``; a leading UTF-8 byte-order mark is dropped."""
    body = body.removeprefix(codecs.BOM_UTF8)
    if not body.strip():
        raise bad_request('body is empty; send an instance or {"instances": [...]}')
    payload = _parse_json(body, "body")
    if isinstance(payload, dict) and "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise bad_request(f"instances must be a list, got {type(instances).__name__}")
        if not instances:
            raise bad_request("instances is empty")
        return instances
    return [payload]


def decode_jsonlines(body: bytes) -> list[Any]:
    r"""One instance per non-blank line.

    Lines end at ``\n`` (or ``\r\n``) only, as JSON Lines defines them:
    ``str.splitlines`` would also split at U+2028, U+2029 and U+0085, which are
    valid inside JSON strings (an id may hold them). Blank means JSON whitespace only.
    """
    lines = [line for line in _text(body).split("\n") if line.strip(JSON_WHITESPACE)]
    if not lines:
        raise bad_request("body is empty; send one JSON instance per line")
    return [_parse_json(line, f"line {number}") for number, line in enumerate(lines, start=1)]


def decode_csv(body: bytes) -> list[Any]:
    """``user_id[,k]`` rows become ``{"user_id": ..., "k": ...}`` instances."""
    try:
        reader = csv.reader(io.StringIO(_text(body), newline=""))
        rows = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise bad_request(f"body is not valid CSV: {error}") from error
    if rows and rows[0][0].strip().lower() == "user_id":
        rows = rows[1:]
    if not rows:
        raise bad_request("body is empty; send one user_id[,k] row per line")
    instances: list[Any] = []
    for number, row in enumerate(rows, start=1):
        if len(row) > 2:
            raise bad_request(f"row {number}: expected user_id[,k], got {len(row)} columns")
        instance: dict[str, Any] = {"user_id": row[0].strip()}
        if len(row) == 2:
            try:
                instance["k"] = int(row[1])
            except ValueError as error:
                raise bad_request(f"row {number}: k must be an integer, got {row[1]!r}") from error
        instances.append(instance)
    return instances


def encode_json(predictions: list[dict[str, Any]]) -> bytes:
    """``{"predictions": [...]}``."""
    return _dumps({"predictions": predictions})


def encode_jsonlines(predictions: list[dict[str, Any]]) -> bytes:
    """One prediction per line."""
    return b"".join(_dumps(prediction) + b"\n" for prediction in predictions)


def encode_csv(predictions: list[dict[str, Any]]) -> bytes:
    """One row per prediction: the id, then the item ids (or the scores, for score requests)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for prediction in predictions:
        if "scores" in prediction:
            cells = ["" if score is None else repr(score) for score in prediction["scores"]]
            writer.writerow([prediction["user_id"], *cells])
        else:
            key = "user_id" if "user_id" in prediction else "item_id"
            writer.writerow([prediction[key], *(item["item_id"] for item in prediction["items"])])
    return out.getvalue().encode()


DECODERS: dict[str, Callable[[bytes], list[Any]]] = {
    JSON: decode_json,
    JSONLINES: decode_jsonlines,
    CSV: decode_csv,
}
ENCODERS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
    JSON: encode_json,
    JSONLINES: encode_jsonlines,
    CSV: encode_csv,
}


def decode(body: bytes, content_type: str) -> list[Any]:
    """Raw instances from a request body.

    Raises:
        InferenceError: 415 for an unsupported content type, 400 for a bad body.
    """
    decoder = DECODERS.get(normalise(content_type))
    if decoder is None:
        raise InferenceError(
            415, f"Content-Type {content_type!r} is not supported; use one of {list(SUPPORTED)}"
        )
    return decoder(body)


def encode(predictions: list[dict[str, Any]], accept: str) -> bytes:
    """Response bytes for ``accept`` (a type chosen by ``negotiate``)."""
    return ENCODERS[accept](predictions)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (used for error bodies too)."""
    return _dumps(obj)


def negotiate(accept_header: str | None, request_type: str) -> str:
    """The response type: the best supported match for ``Accept``, else the request's own type.

    A missing ``Accept`` or ``*/*`` answers in the request's own content type.

    Raises:
        InferenceError: 406 when ``Accept`` names only unsupported types.
    """
    from werkzeug.datastructures import MIMEAccept
    from werkzeug.http import parse_accept_header

    if not accept_header or not accept_header.strip():
        return request_type
    # Parameters (``; charset=utf-8``) are dropped and aliases mapped before matching.
    accepted = MIMEAccept(
        [
            (normalise(value), quality)
            for value, quality in parse_accept_header(accept_header, MIMEAccept)
        ]
    )
    preference = [request_type, *(t for t in SUPPORTED if t != request_type)]
    match = accepted.best_match(preference)
    if match is None:
        raise InferenceError(
            406, f"Accept {accept_header!r} is not supported; use one of {list(SUPPORTED)}"
        )
    return match
