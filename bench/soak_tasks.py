"""The recording task of the fault tests and the soak (``bench.soak_tasks.run``).

Each run writes its own row in ``soak_run`` (see bench/recording.py) through
an autocommit connection of its own (``SOAK_RECORD_URL``), stays busy for
the given time while refreshing ``last_seen``, and returns a result derived
from its argument only.
"""

import asyncio
import os
import threading
import time
from datetime import UTC, datetime

import psycopg
from django.tasks import task
from django.tasks.base import TaskContext

from bench.recording import RECORD_URL_ENV, expected_result

# Enough attempts that only a real loss, not a run of bad luck under faults
# (killed children, rescues), leaves a job failed.
MAX_ATTEMPTS = 25
TOUCH_INTERVAL = 0.05
# How long a run waits for the database to write its start or finish (a restart takes ~2 s).
WRITE_PATIENCE = 60.0


class _Recorder:
    """This process's connection for the diary, opened again whenever it breaks."""

    def __init__(self) -> None:
        self.conn: psycopg.Connection | None = None
        self.pid = 0

    def _execute(self, query: str, params: tuple) -> tuple | None:
        if self.conn is None or self.conn.closed or self.conn.broken or self.pid != os.getpid():
            url = os.environ.get(RECORD_URL_ENV) or os.environ["DATABASE_URL"]
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
            self.pid = os.getpid()
        cursor = self.conn.execute(query, params)
        return cursor.fetchone() if cursor.description else None

    def write(self, query: str, params: tuple, *, patient: bool) -> tuple | None:
        """Run one statement; a patient write retries until the database is back."""
        deadline = time.monotonic() + (WRITE_PATIENCE if patient else 0)
        while True:
            try:
                return self._execute(query, params)
            except psycopg.OperationalError:
                if self.conn is not None:
                    self.conn.close()
                if time.monotonic() >= deadline:
                    if patient:
                        raise
                    return None
                time.sleep(0.2)


# One recorder per thread: async-mode runs write from the threads asyncio.to_thread lends.
_recorders = threading.local()


def _recorder() -> _Recorder:
    if not hasattr(_recorders, "recorder"):
        _recorders.recorder = _Recorder()
    return _recorders.recorder


def _start(context: TaskContext) -> int:
    row = _recorder().write(
        "INSERT INTO soak_run (job_id, attempt, pid, supervisor_pid, started_at, last_seen) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (int(context.task_result.id), context.attempt, os.getpid(), os.getppid(),
         _now(), _now()),
        patient=True,
    )  # fmt: skip
    assert row is not None
    return row[0]


def _touch(run_id: int) -> None:
    _recorder().write(
        "UPDATE soak_run SET last_seen = %s WHERE id = %s", (_now(), run_id), patient=False
    )


def _finish(run_id: int) -> None:
    finished = _now()
    _recorder().write(
        "UPDATE soak_run SET finished_at = %s, last_seen = %s WHERE id = %s",
        (finished, finished, run_id),
        patient=True,
    )


@task(takes_context=True, max_attempts=MAX_ATTEMPTS)
def run(context: TaskContext, key: int, seconds: float) -> str:
    """Record this run, stay busy for ``seconds`` while touching it, record its end."""
    run_id = _start(context)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(TOUCH_INTERVAL, left))
        if left > TOUCH_INTERVAL:
            _touch(run_id)
    _finish(run_id)
    return expected_result(key)


@task(takes_context=True, max_attempts=MAX_ATTEMPTS, execution="async")
async def run_async(context: TaskContext, key: int, seconds: float) -> str:
    """run() as an async-mode job: the same rows, awaiting where run() sleeps."""
    run_id = await asyncio.to_thread(_start, context)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(TOUCH_INTERVAL, left))
        if left > TOUCH_INTERVAL:
            await asyncio.to_thread(_touch, run_id)
    await asyncio.to_thread(_finish, run_id)
    return expected_result(key)


def _now() -> datetime:
    return datetime.now(UTC)
