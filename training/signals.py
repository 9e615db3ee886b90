"""A stop request set by SIGTERM (job stopped, Spot interruption) and read between batches."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

logger = logging.getLogger(__name__)


class StopFlag:
    """Set from a signal handler; the training loop reads it after every batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Ask training to stop after the current batch."""
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


def stop_on_sigterm(flag: StopFlag | None = None) -> StopFlag:
    """A ``StopFlag`` (``flag``, or a new one) that SIGTERM sets (call from the main thread).

    Call again with the same flag after anything that installs its own SIGTERM handler
    in C: ``MultiWorkerMirroredStrategy``'s coordination service does, and would
    otherwise swallow the signal (``training.distributed.make_distribution``).
    """
    flag = StopFlag() if flag is None else flag

    def on_sigterm(signum: int, frame: Any) -> None:
        logger.warning("SIGTERM received: stopping after the current batch")
        flag.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    return flag
