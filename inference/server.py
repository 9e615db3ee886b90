"""The ``serve`` program (``docker run IMAGE serve``): gunicorn running the Flask app.

Settings come from the hosting environment (``inference.settings``): port
``SAGEMAKER_BIND_TO_PORT`` (8080), workers ``SAGEMAKER_MODEL_SERVER_WORKERS``
(one per CPU; one when a GPU is visible), timeout ``SAGEMAKER_MODEL_SERVER_TIMEOUT``
(60 s), model ``<SAGEMAKER_BASE_DIR or /opt/ml>/model``.

Design:

- gunicorn runs in this process (``BaseApplication``), so it is the process that
  receives SIGTERM: it stops accepting, lets in-flight requests finish for up to
  ``GRACEFUL_TIMEOUT`` (25 s) and exits, inside SageMaker's 30 s.
- ``main`` sets one BLAS/OpenMP thread per worker before NumPy is first imported
  (``inference`` imports nothing heavy at package level).
- ``preload_app`` is off: each worker loads the model once when it starts (not on
  the first request). A model that cannot be loaded leaves the worker up, with
  ``/ping`` answering 503 and the reason, and the log saying why, instead of a
  silent crash loop.
- gthread workers (``NCF_SERVER_THREADS`` threads each; ``inference.workers`` adds
  closing idle keep-alive connections on SIGTERM): ``/ping`` is served by a
  free thread even while other threads score, and a slow client holds one thread,
  not a whole worker. NumPy releases the GIL in its kernels, and BLAS is pinned
  to one thread per worker so workers do not oversubscribe the CPUs.
- No nginx in front: SageMaker's own front end terminates client connections and
  buffers requests before they reach the container, the 6 MB limit is enforced
  by the app (also for chunked bodies), and gthread keep-alive handling copes
  with slow local clients; nginx would add a process, a config and a hop per
  request for no gain measured here (see BENCHMARKS.md "serving").
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from inference.settings import ServingSettings, SettingsError

GRACEFUL_TIMEOUT = 25


class InferenceServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from ``ServingSettings``; each worker builds its own app."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        """Set gunicorn's options from the serving settings (see the module docstring)."""
        settings = self.settings
        options: dict[str, Any] = {
            "bind": f"0.0.0.0:{settings.port}",
            "workers": settings.workers,
            "worker_class": os.environ.get(
                "NCF_WORKER_CLASS", "inference.workers.DrainingThreadWorker"
            ),
            "threads": settings.threads,
            "timeout": settings.timeout,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": 75,  # longer than SageMaker's front end keeps idle connections
            "preload_app": False,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": os.environ.get("NCF_LOG_LEVEL", "info").lower(),
            "proc_name": "ncf-serve",
        }
        if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 26: no ~/.gunicorn socket
            options["control_socket_disable"] = True
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        """Build the app; runs in each worker after fork (preload_app is off), loading the model."""
        from inference.app import create_app_from_settings

        return create_app_from_settings(self.settings)


def main() -> int:
    """Start gunicorn; returns its exit status."""
    # One BLAS/OpenMP thread per worker, set before NumPy is imported (workers inherit it).
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = ServingSettings.from_env()
    except SettingsError as error:
        logging.getLogger("serve").error("bad serving setting: %s", error)
        return 2
    logging.getLogger("serve").info(
        "serving %s on port %d with %d worker(s) x %d thread(s), timeout %d s",
        settings.model_dir,
        settings.port,
        settings.workers,
        settings.threads,
        settings.timeout,
    )
    # Import the code (NumPy, pandas, pyarrow, Flask: ~1-2 s) once in the master, so forked
    # workers inherit it and only load the model; the model itself still loads per worker.
    import inference.app  # noqa: F401

    InferenceServer(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
