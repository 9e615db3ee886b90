"""The gunicorn worker ``serve`` runs: gthread that drops idle connections on SIGTERM.

Stock gthread keeps idle keep-alive connections open through a graceful shutdown
until they time out, so one idle client (SageMaker's front end keeps connections
open) holds the worker for the whole ``graceful_timeout``. An idle keep-alive
connection carries no request, so on shutdown this worker closes those at once
and waits only for requests actually in flight.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class DrainingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, but a graceful shutdown waits for in-flight requests only."""

    def set_accept_enabled(self, enabled: bool) -> None:
        """Stop or start accepting; on shutdown also expire idle connections."""
        super().set_accept_enabled(enabled)
        if enabled or self.alive:
            return
        # Shutting down: mark idle keep-alive and not-yet-readable connections expired
        # and let gunicorn's own reapers close them (attributes differ across versions).
        now = time.monotonic()
        for queue_name, reaper in (
            ("keepalived_conns", "murder_keepalived"),
            ("pending_conns", "murder_pending"),
        ):
            connections: Any = getattr(self, queue_name, None)
            if connections is None or not hasattr(self, reaper):
                continue
            for connection in connections:
                connection.timeout = now
            getattr(self, reaper)()
