"""The ``serve`` program (``docker run IMAGE serve``): nginx in front of gunicorn running the app.

Settings come from the hosting environment (``inference.settings``): port
``SAGEMAKER_BIND_TO_PORT`` (8080), workers ``SAGEMAKER_MODEL_SERVER_WORKERS``
(one per CPU; one when a GPU is visible), timeout ``SAGEMAKER_MODEL_SERVER_TIMEOUT``
(60 s), payload limit ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (6), model
``<SAGEMAKER_BASE_DIR or /opt/ml>/model``.

Design:

- nginx listens on the port and gunicorn on a Unix socket behind it
  (``inference.proxy`` writes nginx's configuration into a private temporary
  directory). nginx reads every request in full, with header and body
  timeouts, before gunicorn sees it, and buffers every response. Without it,
  eight clients sending one byte per second held all 2 x 4 gthread threads and
  ``/ping`` timed out; with it, the slowest ``/ping`` took 0.05 s beside 256
  such clients (``benchmarks/slow_clients.py``; tested in
  ``tests/serving/test_server.py``). The earlier argument against nginx
  (SageMaker's front end buffers requests already) does not hold for the same
  image run with ``docker run`` or behind another proxy, and nginx's cost did
  not show: in the same runs, server CPU per top-10 request was 0.80-1.00 ms
  with nginx and 0.77-0.98 ms without, within this machine's noise
  (BENCHMARKS.md "serving"). There is no mode without nginx: ``serve`` exits
  with status 2 and says how to install it.
- This process only supervises: it forks gunicorn (``InferenceServer``) and
  spawns nginx. On SIGTERM (or SIGINT) it first stops nginx gracefully: nginx
  closes its port and idle connections and finishes the requests it has, for
  at most ``inference.proxy.SHUTDOWN_TIMEOUT`` (18 s), forwarding the rest of
  their bodies to gunicorn. Then gunicorn stops, waiting for requests still in
  its workers for at most ``GRACEFUL_TIMEOUT`` (8 s): both inside SageMaker's
  30 s. If either process dies on its own, the other is stopped and ``serve``
  exits non-zero, so the container restarts instead of half-serving.
- ``main`` sets one BLAS/OpenMP thread per worker before NumPy is first imported
  (``inference`` imports nothing heavy at package level), and imports the app's
  code once before forking gunicorn, so forked workers inherit it.
- ``preload_app`` is on: the gunicorn master loads the model once, builds the app,
  moves what it loaded out of the garbage collector's reach (``gc.freeze``) and
  only then forks the workers, which share the model's pages copy-on-write. The
  workers start in milliseconds instead of each loading the model (at 1M items
  two workers loading at once on two cores took 53-97 s before ``/ping``; issue
  16), the arrays are in memory once, and a worker that gunicorn replaces
  starts with the model already there. A model that cannot be loaded still
  leaves the server up, with ``/ping`` answering 503 and the reason, and the log
  saying why, instead of a silent crash loop (the load error is caught in the
  master and every worker serves the 503).
- gthread workers (``NCF_SERVER_THREADS`` threads each; ``inference.workers`` adds
  closing idle keep-alive connections on SIGTERM): ``/ping`` is served by a
  free thread even while the other thread scores. Two threads by default, not
  more: a worker's threads share one GIL, and requests queued on it are the
  tail at 16 connections (``inference.settings``). NumPy releases the GIL in
  its kernels, and BLAS is pinned to one thread per worker so workers do not
  oversubscribe the CPUs.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from gunicorn.app.base import BaseApplication

from inference import proxy
from inference.settings import ServingSettings, SettingsError

GRACEFUL_TIMEOUT = 8
LOGGER = logging.getLogger("serve")


class InferenceServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from ``ServingSettings``; each worker builds its own app.

    Args:
        settings: The serving settings.
        bind: gunicorn's address, ``unix:PATH`` behind nginx (or ``HOST:PORT``).
    """

    def __init__(self, settings: ServingSettings, bind: str) -> None:
        self.settings = settings
        self.bind = bind
        super().__init__()

    def load_config(self) -> None:
        """Set gunicorn's options from the serving settings (see the module docstring)."""
        settings = self.settings
        options: dict[str, Any] = {
            "bind": self.bind,
            "workers": settings.workers,
            "worker_class": os.environ.get(
                "NCF_WORKER_CLASS", "inference.workers.DrainingThreadWorker"
            ),
            "threads": settings.threads,
            "timeout": settings.timeout,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": 75,  # longer than nginx keeps idle upstream connections (60 s)
            "preload_app": True,
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
        """Build the app, loading the model; runs once, in the master, before the workers fork."""
        from inference.app import create_app_from_settings

        app = create_app_from_settings(self.settings)
        freeze_loaded_objects()
        return app


def freeze_loaded_objects() -> None:
    """Move everything loaded so far out of the garbage collector's reach (``gc.freeze``).

    The model's id maps and lists are millions of long-lived objects at a large catalog;
    each full collection traversed them all while a request waited: 277 ms per
    ``gc.collect()`` with a 1M-item model loaded, 0.0 ms after the freeze
    (BENCHMARKS.md, issue 16). They live as long as the server, so nothing is lost by
    never collecting them; objects made by requests are collected as before. Called in
    the master before fork, it also keeps the workers' collections from writing to
    those objects' pages, which would copy them into every worker.
    """
    gc.collect()
    gc.freeze()


def _run_gunicorn(settings: ServingSettings, bind: str) -> int:
    """Run gunicorn and return its exit status; runs in the forked child."""
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # gunicorn installs its own
        signal.signal(stop_signal, signal.SIG_DFL)
    try:
        InferenceServer(settings, bind).run()
    except SystemExit as exit_:  # the arbiter leaves through sys.exit
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


class Supervisor:
    """Runs gunicorn and nginx as child processes and stops them in order.

    Args:
        settings: The serving settings.
        nginx: The nginx binary.
        runtime_dir: A private directory for the socket and nginx's files.
    """

    def __init__(self, settings: ServingSettings, nginx: str, runtime_dir: Path) -> None:
        self.settings = settings
        self.nginx = nginx
        self.runtime_dir = runtime_dir
        self.gunicorn_pid: int | None = None
        self.nginx_pid: int | None = None
        self.stopping = False
        self.exit_status = 0

    def run(self) -> int:
        """Start both processes, wait until both have exited; returns ``serve``'s exit status."""
        socket_path = self.runtime_dir / "gunicorn.sock"
        config_path = self.runtime_dir / "nginx.conf"
        config_path.write_text(proxy.nginx_config(self.settings, self.runtime_dir, socket_path))
        # nginx's workers drop root for an unprivileged user, which must reach the socket
        # and nginx's temporary directories in here; nothing in it is listed or read by others.
        self.runtime_dir.chmod(0o711)
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, self._on_stop_signal)

        gunicorn_pid = os.fork()
        if gunicorn_pid == 0:  # pragma: no cover - the child; its exit status is tested
            os._exit(_run_gunicorn(self.settings, f"unix:{socket_path}"))
        self.gunicorn_pid = gunicorn_pid
        self.nginx_pid = os.posix_spawn(
            self.nginx,
            [self.nginx, "-e", "stderr", "-p", f"{self.runtime_dir}/", "-c", str(config_path)],
            os.environ,
        )
        if self.stopping:  # a signal came before both processes existed
            self._stop_nginx()
        while self.gunicorn_pid is not None or self.nginx_pid is not None:
            pid, wait_status = os.waitpid(-1, 0)
            self._exited(pid, os.waitstatus_to_exitcode(wait_status))
        return self.exit_status

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        LOGGER.info("%s: stopping nginx, then gunicorn", signal.Signals(signum).name)
        self.stopping = True
        self._stop_nginx()

    def _stop_nginx(self) -> None:
        if self.nginx_pid is not None:  # SIGQUIT: graceful shutdown
            os.kill(self.nginx_pid, signal.SIGQUIT)
        elif self.gunicorn_pid is not None:
            os.kill(self.gunicorn_pid, signal.SIGTERM)

    def _exited(self, pid: int, status: int) -> None:
        if pid == self.nginx_pid:
            self.nginx_pid = None
            name = "nginx"
        elif pid == self.gunicorn_pid:
            self.gunicorn_pid = None
            name = "gunicorn"
        else:
            return
        if not self.stopping:
            LOGGER.error("%s exited with status %d; stopping", name, status)
            self.stopping = True
            self.exit_status = status or 1
        elif status and not self.exit_status:
            self.exit_status = status
        # nginx has drained (or died): gunicorn goes next; gunicorn died: nginx has nothing
        # left to serve.
        if self.gunicorn_pid is not None and self.nginx_pid is None:
            os.kill(self.gunicorn_pid, signal.SIGTERM)
        elif self.nginx_pid is not None and self.gunicorn_pid is None:
            os.kill(self.nginx_pid, signal.SIGQUIT)


def main() -> int:
    """Start gunicorn behind nginx; returns the exit status."""
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
        nginx = proxy.find_nginx(settings.nginx)
    except SettingsError as error:
        LOGGER.error("bad serving setting: %s", error)
        return 2
    except proxy.ProxyUnavailableError as error:
        LOGGER.error("%s", error)
        return 2
    LOGGER.info(
        "serving %s on port %d through %s, with %d worker(s) x %d thread(s), timeout %d s",
        settings.model_dir,
        settings.port,
        nginx,
        settings.workers,
        settings.threads,
        settings.timeout,
    )
    # Import the code (NumPy, pandas, pyarrow, Flask: ~1-2 s) once, before gunicorn is forked;
    # gunicorn's master then loads the model once before forking its workers (preload_app).
    import inference.app  # noqa: F401

    runtime_dir = Path(tempfile.mkdtemp(prefix="ncf-serve-"))
    try:
        return Supervisor(settings, nginx, runtime_dir).run()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
