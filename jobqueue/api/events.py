"""Wake long-polling requests when their job changes (``GET /api/jobs/{id}/?wait=N``).

One thread per web process holds one connection that LISTENs on the job
events channel (progress, ack, cancel and retry NOTIFY it with job ids) and
wakes the requests waiting on those ids. Waiting requests therefore cost a
thread each but no query until their job changes, and the database sees one
listening connection per process however many requests wait.
"""

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from jobqueue import db
from jobqueue.queries import EVENTS_CHANNEL

logger = logging.getLogger(__name__)


class JobEvents:
    """The process's listener: requests ``watch()`` a job id and wait on the event it yields."""

    # Seconds a request waits for the listener to start before relying on polling.
    START_TIMEOUT = 2.0
    # Longest pause between reconnection attempts after the connection is lost.
    MAX_BACKOFF = 10.0

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._lock = threading.Lock()
        self._waiters: dict[int, set[threading.Event]] = {}
        self._listening = threading.Event()
        self._pid: int | None = None

    @property
    def listening(self) -> bool:
        """Whether notifications are being received; if not, waiters must poll."""
        return self._listening.is_set()

    @contextmanager
    def watch(self, job_id: int) -> Iterator[threading.Event]:
        """An event set whenever ``job_id`` may have changed, while the block runs.

        Register before reading the job: a change between the read and the
        wait then still sets the event instead of being missed.
        """
        self._start()
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(event)
        try:
            self._listening.wait(self.START_TIMEOUT)
            yield event
        finally:
            with self._lock:
                events = self._waiters.get(job_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiters[job_id]

    def _start(self) -> None:
        """Start the listener thread once per process (again in a forked child)."""
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._listening.clear()
        threading.Thread(target=self._run, name="jobqueue-events", daemon=True).start()

    def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                with db.connect(self.alias) as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    self._listening.set()
                    # Changes made while nobody listened went unheard: let waiters re-read.
                    self._wake(None)
                    backoff = 0.5
                    for notify in conn.notifies():
                        self._wake(notify.payload)
            except Exception:
                logger.exception("job events listener lost its connection; reconnecting")
            self._listening.clear()
            self._wake(None)
            time.sleep(backoff)
            backoff = min(backoff * 2, self.MAX_BACKOFF)

    def _wake(self, payload: str | None) -> None:
        """Set the events of the ids in ``payload`` (comma-separated), or of all waiters."""
        with self._lock:
            if payload is None:
                targets = [e for events in self._waiters.values() for e in events]
            else:
                targets = [
                    e
                    for part in payload.split(",")
                    if part.isdigit()
                    for e in self._waiters.get(int(part), ())
                ]
        for event in targets:
            event.set()


job_events = JobEvents()
