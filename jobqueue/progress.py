"""progress() for task code: report how far a job is, and stop it when asked to."""

import asyncio
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jobqueue import queries
from jobqueue.exceptions import JobCancelled, JobTimeout, LeaseLost
from jobqueue.jsonb import storable_text


@dataclass(slots=True, kw_only=True)
class ProgressReporter:
    """Where progress of one running job goes; set by the worker's executor for that job."""

    job_id: int
    token: int  # the attempt's fencing token: progress of a lost attempt is not stored
    connection: Any  # an autocommit psycopg connection, owned by the child process
    # The child's jobs that run at once (threads, async slots) share its one progress
    # connection: a psycopg connection runs one statement at a time.
    lock: threading.Lock | None = None
    # Monotonic deadline of a job that no signal can interrupt (thread mode):
    # progress() past it raises JobTimeout, the job's one place to be stopped.
    deadline: float | None = None

    def report(self, percent: float | None, message: str | None) -> bool | None:
        if self.lock is None:
            return self._report(percent, message)
        with self.lock:
            return self._report(percent, message)

    def _report(self, percent: float | None, message: str | None) -> bool | None:
        with self.connection.cursor() as cursor:
            return queries.report_progress(
                cursor, job_id=self.job_id, token=self.token, percent=percent, message=message
            )


# The reporter of the job running in this context: a process has one job at a time
# in process mode, but each thread or asyncio task of the concurrent modes has its own.
_current: ContextVar[ProgressReporter | None] = ContextVar("jobqueue_progress", default=None)


def set_reporter(reporter: ProgressReporter | None) -> None:
    _current.set(reporter)


def progress(percent: float | None = None, message: str | None = None) -> None:
    """Persist the running job's progress where API clients and staff can see it.

    Also the task's cancellation check point: raises JobCancelled when
    cancellation of the job was requested, so the task stops cleanly here, and
    LeaseLost when this attempt no longer holds the job (it was rescued after
    its worker went silent past the lease, and may be running elsewhere): what
    it would write now would be recorded on nobody's behalf. In thread mode it
    is also where a job past its timeout gets JobTimeout (no signal can stop a
    thread). Outside a worker (a direct call, or another tasks backend) it does
    nothing. A NUL or a surrogate in ``message``, which PostgreSQL cannot
    store, is spelled out as repr() shows it rather than failing the job.
    """
    if percent is not None and not 0 <= percent <= 100:
        raise ValueError(f"percent must be between 0 and 100, got {percent}")
    reporter = _current.get()
    if reporter is None:
        return
    if reporter.deadline is not None and time.monotonic() >= reporter.deadline:
        raise JobTimeout("the job ran past its timeout")
    if message is not None:
        message = storable_text(message)
    cancel = reporter.report(None if percent is None else float(percent), message)
    if cancel is None:
        raise LeaseLost(f"job {reporter.job_id}: this attempt no longer holds the job")
    if cancel:
        raise JobCancelled(f"job {reporter.job_id} was cancelled")


async def aprogress(percent: float | None = None, message: str | None = None) -> None:
    """progress() for ``async def`` tasks: the same contract, without blocking the event loop.

    The write runs in a thread (the context, and so the job's reporter, goes with it).
    """
    if _current.get() is None:
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"percent must be between 0 and 100, got {percent}")
        return
    await asyncio.to_thread(progress, percent, message)
