"""The Flask app: thin routes over ``flow``, and one error handler that answers JSON.

Routes: ``GET /ping`` (200 only when the model is loaded, else 503 with why),
``POST /invocations`` and ``GET /execution-parameters``. Every error, including
404 / 405 / 413 from Werkzeug, is ``{"error": "..."}`` with its status;
anything unexpected is a logged 500 and the worker carries on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from inference import content_types, flow
from inference.errors import InferenceError
from inference.instances import Reranking
from inference.recommender import Recommender
from inference.retrieval import RetrievalSettings
from inference.settings import ServingSettings

LOGGER = logging.getLogger("inference")


def _json(payload: object, status: int = 200) -> Response:
    return Response(content_types.dumps(payload), status=status, mimetype=content_types.JSON)


def read_body(limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes.

    Werkzeug checks ``Content-Length`` against ``MAX_CONTENT_LENGTH``. A chunked
    body has none (behind nginx it always has: nginx reads the body first), so it
    is read from the server's terminated input stream, at most one byte past the
    limit. Werkzeug's own limited stream is not used for this: it refuses a body
    of exactly ``limit`` bytes, raising on the read that finds the end.

    Raises:
        RequestEntityTooLarge: The body is over ``limit`` (answered as 413).
    """
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=False)
    stream = request.environ["wsgi.input"]
    pieces, size = [], 0
    while size <= limit and (piece := stream.read(min(65_536, limit + 1 - size))):
        size += len(piece)
        pieces.append(piece)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(pieces)


def load_recommender(
    model_dir: Path,
    reranking: Reranking | None = None,
    retrieval: RetrievalSettings | None = None,
) -> tuple[Recommender | None, str | None]:
    """The model, or ``None`` and the reason it could not be loaded (also logged)."""
    started = time.perf_counter()
    try:
        recommender = Recommender.from_model_dir(model_dir, reranking, retrieval)
    except Exception as error:  # the worker stays up and /ping reports why
        reason = f"model in {model_dir} could not be loaded: {error}"
        LOGGER.exception("%s", reason)
        return None, reason
    LOGGER.info(
        "loaded %s model from %s (%d users, %d items) in %.2f s",
        recommender.metadata.model_type,
        model_dir,
        len(recommender.user_ids),
        recommender.num_items,
        time.perf_counter() - started,
    )
    return recommender, None


def create_app(
    settings: ServingSettings,
    recommender: Recommender | None = None,
    load_error: str | None = None,
) -> Flask:
    """The WSGI app around an already loaded ``recommender`` (or the reason there is none)."""
    app = Flask("inference")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes
    if recommender is None and load_error is None:
        load_error = "no model was loaded"
    execution_parameters = content_types.dumps(
        {
            "MaxConcurrentTransforms": settings.max_concurrent_transforms,
            "BatchStrategy": settings.batch_strategy,
            "MaxPayloadInMB": settings.max_payload_mb,
        }
    )

    @app.get("/ping")
    def ping() -> Response:
        if recommender is None:
            return _json({"error": load_error}, 503)
        return _json({"status": "healthy"})

    @app.get("/execution-parameters")
    def execution_parameters_route() -> Response:
        return Response(execution_parameters, mimetype=content_types.JSON)

    @app.post("/invocations")
    def invocations() -> Response:
        if recommender is None:
            return _json({"error": load_error}, 503)
        body, mimetype = flow.invoke(
            recommender,
            read_body(settings.max_payload_bytes),
            request.headers.get("Content-Type"),
            request.headers.get("Accept"),
        )
        return Response(body, mimetype=mimetype)

    @app.errorhandler(InferenceError)
    def inference_error(error: InferenceError) -> Response:
        return _json({"error": error.message}, error.status)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:
            message = settings.too_large_message
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif status == 404:
            message = f"no route {request.path}; use /ping, /invocations or /execution-parameters"
        else:
            message = error.description or error.name
        response = _json({"error": message}, status)
        if status == 405 and error.get_headers():
            for name, value in error.get_headers():
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> Response:
        LOGGER.exception("unexpected fault on %s %s", request.method, request.path)
        return _json({"error": f"internal server error: {type(error).__name__}"}, 500)

    return app


def create_app_from_settings(settings: ServingSettings) -> Flask:
    """Load the model from ``settings.model_dir`` (once, in this process) and build the app."""
    recommender, load_error = load_recommender(
        settings.model_dir, settings.reranking, settings.retrieval
    )
    return create_app(settings, recommender, load_error)
