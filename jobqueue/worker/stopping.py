"""When the worker stops: SIGTERM or SIGINT (a second one stops at once), or by itself
(--burst drained, --max-jobs reached). Either way it gets a deadline: running jobs may
finish until then, and what is left is given back."""

import logging
import selectors
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger("jobqueue.worker")


class StopDeadline:
    """The worker's stop deadline (monotonic), None while it serves.

    A signal handler runs between two bytecodes of the loop, possibly while it
    waits in select(); the signal module also writes the signal's number to a
    socket the selector watches (set_wakeup_fd), so that the loop wakes at once.
    """

    def __init__(
        self, *, worker_name: str, shutdown_timeout: float, running: Callable[[], int]
    ) -> None:
        self.worker_name = worker_name
        self.shutdown_timeout = shutdown_timeout
        self.running = running  # how many jobs run now, for the log line
        self.at: float | None = None
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    def install(self, selector: selectors.BaseSelector) -> None:
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        selector.register(self._wakeup_r, selectors.EVENT_READ, "signal")
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def woken(self) -> None:
        """The selector found the wakeup socket readable: empty it."""
        try:
            while self._wakeup_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.at is not None:
            logger.warning("second %s: stopping now", signal.Signals(signum).name)
            self.at = time.monotonic()
        else:
            self.request(f"got {signal.Signals(signum).name}")

    def request(self, why: str) -> None:
        logger.info(
            "worker %s stopping (%s): finishing %d running jobs within %.0f s",
            self.worker_name,
            why,
            self.running(),
            self.shutdown_timeout,
        )
        self.at = time.monotonic() + self.shutdown_timeout
