"""progress() for task code: report how far a job is, and stop it when asked to."""

from dataclasses import dataclass
from typing import Any

from jobqueue import queries
from jobqueue.exceptions import JobCancelled, LeaseLost
from jobqueue.jsonb import storable_text


@dataclass(slots=True, kw_only=True)
class ProgressReporter:
    """Where progress of the job running in this process goes; set by the worker's executor."""

    job_id: int
    token: int  # the attempt's fencing token: progress of a lost attempt is not stored
    connection: Any  # an autocommit psycopg connection, owned by the child process

    def report(self, percent: float | None, message: str | None) -> bool | None:
        with self.connection.cursor() as cursor:
            return queries.report_progress(
                cursor, job_id=self.job_id, token=self.token, percent=percent, message=message
            )


_current: ProgressReporter | None = None


def set_reporter(reporter: ProgressReporter | None) -> None:
    global _current
    _current = reporter


def progress(percent: float | None = None, message: str | None = None) -> None:
    """Persist the running job's progress where API clients and staff can see it.

    Also the task's cancellation check point: raises JobCancelled when
    cancellation of the job was requested, so the task stops cleanly here, and
    LeaseLost when this attempt no longer holds the job (it was rescued after
    its worker went silent past the lease, and may be running elsewhere): what
    it would write now would be recorded on nobody's behalf.
    Outside a worker (a direct call, or another tasks backend) it does nothing.
    A NUL or a surrogate in ``message``, which PostgreSQL cannot store, is
    spelled out as repr() shows it rather than failing the job.
    """
    if percent is not None and not 0 <= percent <= 100:
        raise ValueError(f"percent must be between 0 and 100, got {percent}")
    if _current is None:
        return
    if message is not None:
        message = storable_text(message)
    cancel = _current.report(None if percent is None else float(percent), message)
    if cancel is None:
        raise LeaseLost(f"job {_current.job_id}: this attempt no longer holds the job")
    if cancel:
        raise JobCancelled(f"job {_current.job_id} was cancelled")
