"""Serving settings from the SageMaker hosting environment, read once and passed down.

Nothing else in ``inference`` reads environment variables. ``from_env`` takes a
plain mapping so tests can inject one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inference.instances import FALLBACKS, RERANKING_RANGE, Reranking
from inference.retrieval import RETRIEVAL_MODES, RetrievalSettings

#: SageMaker's real-time payload limit, also batch transform's default MaxPayloadInMB.
DEFAULT_MAX_PAYLOAD_MB = 6
BATCH_STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from error
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _fraction(environ: Mapping[str, str], name: str) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return 0.0
    low, high = RERANKING_RANGE
    try:
        value = float(raw)
    except ValueError as error:
        raise SettingsError(
            f"{name} must be a number from {low:g} to {high:g}, got {raw!r}"
        ) from error
    if not low <= value <= high:
        raise SettingsError(f"{name} must be from {low:g} to {high:g}, got {raw!r}")
    return value


def _fallback(environ: Mapping[str, str]) -> str:
    value = (environ.get("NCF_FALLBACK") or "popularity").strip().lower()
    if value not in FALLBACKS:
        raise SettingsError(f"NCF_FALLBACK must be one of {list(FALLBACKS)}, got {value!r}")
    return value


def _retrieval_mode(environ: Mapping[str, str]) -> str:
    mode = environ.get("NCF_RETRIEVAL", "").strip().lower() or "auto"
    if mode not in RETRIEVAL_MODES:
        raise SettingsError(f"NCF_RETRIEVAL must be one of {RETRIEVAL_MODES}, got {mode!r}")
    return mode


def _gpu_visible(environ: Mapping[str, str]) -> bool:
    devices = environ.get("NVIDIA_VISIBLE_DEVICES", "").strip().lower()
    return devices not in ("", "none", "void")


@dataclass(frozen=True)
class ServingSettings:
    """How ``serve`` runs and what ``/execution-parameters`` reports.

    Attributes:
        model_dir: ``<SAGEMAKER_BASE_DIR or /opt/ml>/model``.
        port: ``SAGEMAKER_BIND_TO_PORT`` (8080).
        workers: ``SAGEMAKER_MODEL_SERVER_WORKERS``; default one per CPU, one on a GPU.
        threads: Threads per gunicorn (gthread) worker, ``NCF_SERVER_THREADS`` (2): one
            more than a request needs, so ``/ping`` is answered while a long request runs,
            and no more, since the threads of a worker share one GIL (with 4, the p99 at
            16 connections was 21-26 ms against 17-18 ms with 2; BENCHMARKS.md).
        timeout: ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` seconds (60).
        max_payload_mb: ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (6): larger bodies get 413.
        max_concurrent_transforms: ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS``; default
            the worker count.
        batch_strategy: ``SAGEMAKER_BATCH_STRATEGY`` (``MULTI_RECORD``); with
            ``SAGEMAKER_BATCH=true`` the server is running a batch transform.
        batch: ``SAGEMAKER_BATCH`` is ``true``.
        reranking: The re-ranking a recommend request gets when it names none:
            ``NCF_DIVERSITY`` and ``NCF_POPULARITY_PENALTY`` (each 0 to 1, default 0:
            the plain ranking); see ``inference.recommender``. Also who serves
            a user the model does not know (and who sends no ``user_attributes``)
            when the request names no ``fallback``: ``NCF_FALLBACK``, ``popularity``
            (default) or ``trending``.
        nginx: ``NCF_NGINX``, the nginx binary in front of gunicorn; empty: ``nginx``
            on ``PATH`` or in a usual location (``inference.proxy.find_nginx``).
        retrieval: How recommend requests find their top-k (``inference.retrieval``):
            ``NCF_RETRIEVAL`` (``auto``, ``exact`` or ``approximate``),
            ``NCF_ANN_CANDIDATES`` (200) re-scored exactly, ``NCF_ANN_NPROBE`` (32) lists;
            ``NCF_KNOWN_ROWS_MB`` (256): the bound of an EASE or blend model's table of
            known users' scores (0: none).
    """

    model_dir: Path
    port: int = 8080
    workers: int = 1
    threads: int = 2
    timeout: int = 60
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB
    max_concurrent_transforms: int = 1
    batch_strategy: str = "MULTI_RECORD"
    batch: bool = False
    reranking: Reranking = field(default_factory=Reranking)
    nginx: str = ""
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)

    @property
    def max_payload_bytes(self) -> int:
        """The body size limit in bytes."""
        return self.max_payload_mb * 1024 * 1024

    @property
    def too_large_message(self) -> str:
        """What a 413 says, from the app and from the proxy alike."""
        return f"body is larger than the {self.max_payload_mb} MB limit"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """Read the settings.

        Raises:
            SettingsError: A variable has an unusable value; the message names it.
        """
        environ = os.environ if environ is None else environ
        base_dir = Path(environ.get("SAGEMAKER_BASE_DIR") or "/opt/ml")
        default_workers = 1 if _gpu_visible(environ) else (os.cpu_count() or 1)
        workers = _int(environ, "SAGEMAKER_MODEL_SERVER_WORKERS", default_workers)
        strategy = (environ.get("SAGEMAKER_BATCH_STRATEGY") or "MULTI_RECORD").strip().upper()
        strategy = strategy.replace("MULTIRECORD", "MULTI_RECORD").replace(
            "SINGLERECORD", "SINGLE_RECORD"
        )
        if strategy not in BATCH_STRATEGIES:
            raise SettingsError(
                f"SAGEMAKER_BATCH_STRATEGY must be one of {BATCH_STRATEGIES}, got {strategy!r}"
            )
        return cls(
            model_dir=base_dir / "model",
            port=_int(environ, "SAGEMAKER_BIND_TO_PORT", 8080),
            workers=workers,
            threads=_int(environ, "NCF_SERVER_THREADS", 2),
            timeout=_int(environ, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60),
            max_payload_mb=_int(environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", DEFAULT_MAX_PAYLOAD_MB),
            max_concurrent_transforms=_int(environ, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", workers),
            batch_strategy=strategy,
            batch=environ.get("SAGEMAKER_BATCH", "").strip().lower() == "true",
            reranking=Reranking(
                diversity=_fraction(environ, "NCF_DIVERSITY"),
                popularity_penalty=_fraction(environ, "NCF_POPULARITY_PENALTY"),
                fallback=_fallback(environ),
            ),
            nginx=environ.get("NCF_NGINX", "").strip(),
            retrieval=RetrievalSettings(
                mode=_retrieval_mode(environ),
                candidates=_int(environ, "NCF_ANN_CANDIDATES", 200),
                nprobe=_int(environ, "NCF_ANN_NPROBE", 32),
                known_rows_mb=_int(environ, "NCF_KNOWN_ROWS_MB", 256, minimum=0),
            ),
        )
