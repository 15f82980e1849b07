"""Tasks used by the tests: they leave traces in the database that tests can count."""

import contextlib
import os
import time

from django.db import connection, transaction
from django.tasks import task

from jobqueue import progress


def _record(job_id: str, note: str = "") -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO test_execution (job_id, pid, note) VALUES (%s, pg_backend_pid(), %s)",
            [int(job_id), note],
        )


@task(takes_context=True, max_attempts=1)
def record(context, n: int = 0) -> int:
    """Record one execution of this job; the exactly-once test counts them."""
    _record(context.task_result.id)
    return n


@task(takes_context=True, max_attempts=3)
def record_then_sleep(context, seconds: float = 5) -> str:
    """Record the start of each attempt, then sleep with progress (a job to kill mid-way)."""
    _record(context.task_result.id, f"attempt {context.attempt}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progress(message="sleeping")
        time.sleep(0.1)
    return "slept"


@task(takes_context=True, max_attempts=3)
def flaky(context, failures: int = 2) -> int:
    """Fail the first ``failures`` attempts, then succeed."""
    if context.attempt <= failures:
        raise ValueError(f"attempt {context.attempt} fails on purpose")
    return context.attempt


@task(max_attempts=1)
def ignore_cancel(seconds: float = 30) -> None:
    """Sleep without ever calling progress(): only the supervisor can stop it."""
    time.sleep(seconds)


@task(max_attempts=1, timeout=1)
def too_slow(seconds: float = 30) -> None:
    time.sleep(seconds)


@task(max_attempts=1, timeout=1)
def swallows_timeout(seconds: float = 30) -> None:
    """Catches everything, so only the supervisor's hard kill ends it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(BaseException):
            time.sleep(0.05)


@task(takes_context=True, max_attempts=1, priority=0)
def note_order(context, label: str = "") -> str:
    _record(context.task_result.id, label)
    return label


@task(takes_context=True, max_attempts=3)
def tick(context, seconds: float = 5) -> dict:
    """Write a row every 0.1 s while it runs: two runs of one job that overlap in time
    show as interleaved rows of two attempts (tests.faults.runs reads them)."""
    deadline = time.monotonic() + seconds
    while True:
        _record(context.task_result.id, f"attempt {context.attempt}")
        if time.monotonic() >= deadline:
            return {"attempt": context.attempt, "pid": os.getpid()}
        time.sleep(0.1)


@task(takes_context=True, max_attempts=3)
def record_payload(context, n: int = 0, payload: str = "", seconds: float = 0) -> int:
    """Record one execution, then sleep ``seconds``; ``payload`` only makes the arguments large."""
    _record(context.task_result.id)
    time.sleep(seconds)
    return n


@task(max_attempts=3)
def fail_after(seconds: float = 1) -> None:
    """Fail after ``seconds`` without calling progress()."""
    time.sleep(seconds)
    raise RuntimeError("failed on purpose")


@task(max_attempts=1)
def returns_unstorable(kind: str = "nan") -> object:
    """Return a value jsonb refuses."""
    return {"nan": {"mean": float("nan")}, "nul": {"t": "a\x00"}, "surrogate": ["\ud800"]}[kind]


@task(max_attempts=1)
def raises_unstorable_text() -> None:
    raise ValueError("bad \x00 and \udce9 " + "x" * 100_000)


@task(max_attempts=1, timeout=1)
def slow_query(atomic: bool = False) -> None:
    """Run past the timeout inside a query, optionally within transaction.atomic()."""
    block = transaction.atomic() if atomic else contextlib.nullcontext()
    with block, connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(10)")


@task(max_attempts=1)
def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@task(takes_context=True, max_attempts=1)
def record_then_sleep_quietly(context, seconds: float = 3) -> str:
    """Record the start, then sleep without touching the database (it may be down meanwhile)."""
    _record(context.task_result.id, f"attempt {context.attempt}")
    connection.close()
    time.sleep(seconds)
    return "slept"
