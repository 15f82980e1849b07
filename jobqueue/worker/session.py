"""The supervisor's database session: one autocommit connection, made again when lost.

The connection carries the claim, the acks, the heartbeat, the rescue and the
LISTEN for new jobs. When it is lost, the children keep running (until the
fence falls, see fence.py), outcomes wait, and it is made again with backoff.
"""

import logging
import selectors
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import psycopg

from jobqueue import queries
from jobqueue.conf import JobQueueSettings
from jobqueue.db import connect
from jobqueue.worker import telemetry

logger = logging.getLogger("jobqueue.worker")


class SessionStalled(psycopg.OperationalError):
    """The database did not answer within the session's bound: the connection is dropped."""


class DatabaseSession:
    def __init__(self, conf: JobQueueSettings, selector: selectors.BaseSelector) -> None:
        self.conf = conf
        self.selector = selector
        self.db: psycopg.Connection | None = None
        self.fd: int | None = None  # the connection's socket, as registered with the selector
        self.reconnect_at = time.monotonic()
        self.reconnect_delay = 0.5
        # The server ends a statement after statement_timeout, but a black-holed
        # network (no reset, no answer) never brings that error back: a read
        # would wait until TCP gives up, minutes later. So every database turn
        # is also bounded here, by SIGALRM, a little longer than the server's bound.
        self.lock_timeout = max(0.2, min(2.0, conf.LEASE / 10))
        self.statement_timeout = max(5.0, conf.LEASE / 2)
        self.bound = self.statement_timeout + 2.0
        self._armed = False
        signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self._armed = False
            raise SessionStalled(f"no answer from the database within {self.bound:g} s")

    @contextmanager
    def bounded(self) -> Iterator[None]:
        """Raise SessionStalled in what runs inside once it has taken longer than the bound."""
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, self.bound)
        try:
            yield
        finally:
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def open(self) -> psycopg.Connection:
        """Connect, bound how long any statement may wait, and LISTEN for new jobs.

        Raises psycopg.OperationalError when the database cannot be reached.
        """
        # A lock or a stuck statement must not hold the heartbeat up past the lease:
        # the statement fails, the connection is dropped and made again.
        db = connect(
            self.conf.LISTEN_DATABASE,
            connect_timeout=max(2, round(self.statement_timeout)),
            server_settings={
                "lock_timeout": f"{self.lock_timeout * 1000:.0f}ms",
                "statement_timeout": f"{self.statement_timeout * 1000:.0f}ms",
            },
        )
        db.execute(f"LISTEN {queries.QUEUE_CHANNEL}")
        self.db = db
        return db

    def ready(self) -> None:
        """The connection is set up: watch it for NOTIFY, and reset the backoff."""
        assert self.db is not None
        self.fd = self.db.fileno()
        self.selector.register(self.fd, selectors.EVENT_READ, "db")
        self.reconnect_delay = 0.5

    def lost(self, error: Exception) -> None:
        """Drop the connection and schedule the next attempt."""
        telemetry.reconnecting()
        logger.warning(
            "database connection lost (%s); retrying in %.1f s",
            str(error).strip(),
            self.reconnect_delay,
        )
        if self.fd is not None:
            self.selector.unregister(self.fd)
            self.fd = None
        if self.db is not None:
            self.db.close()
            self.db = None
        self.reconnect_at = time.monotonic() + self.reconnect_delay
        # At most a quarter of the lease: after an outage, other workers wait one lease
        # before they rescue, and this one must be back in time to renew its jobs.
        self.reconnect_delay = min(self.conf.LEASE / 4, self.reconnect_delay * 2)

    def notified_queues(self) -> list[str]:
        """The queues named by the NOTIFYs that have arrived (new jobs there)."""
        assert self.db is not None
        return [note.payload for note in self.db.notifies(timeout=0)]

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
