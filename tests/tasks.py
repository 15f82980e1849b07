"""Tasks used by the tests: they leave traces in the database that tests can count."""

import asyncio
import contextlib
import os
import time

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.dispatch import receiver
from django.tasks import task
from django.tasks.signals import task_finished, task_started

from jobqueue import Snooze, progress
from jobqueue.progress import aprogress


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


@task(takes_context=True, max_attempts=3, execution="async")
async def async_tick(context, seconds: float = 5) -> dict:
    """tick() as an async-mode job."""
    deadline = time.monotonic() + seconds
    while True:
        await sync_to_async(_record)(context.task_result.id, f"attempt {context.attempt}")
        if time.monotonic() >= deadline:
            return {"attempt": context.attempt, "pid": os.getpid()}
        await asyncio.sleep(0.1)


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


@task(concurrency_key="customer:{customer}", concurrency_limit=1, max_attempts=1)
def customer_nap(customer: str, seconds: float = 0.1) -> str:
    """One customer's job: at most one runs at once per customer (tests/test_limits.py)."""
    time.sleep(seconds)
    return customer


# ----------------------------------------------------------------- execution modes
# (tests/test_execution.py): the same kinds of job in thread and async mode.


@task(takes_context=True, execution="async", max_attempts=3, timeout=30)
async def async_nap(context, seconds: float = 1.0) -> str:
    """Record the attempt (the ORM from async code goes through a thread), then await."""
    await sync_to_async(_record)(context.task_result.id, f"attempt {context.attempt}")
    await asyncio.sleep(seconds)
    return "napped"


@task(takes_context=True, execution="thread", max_attempts=3, timeout=30)
def thread_nap(context, seconds: float = 1.0) -> str:
    _record(context.task_result.id, f"attempt {context.attempt}")
    connection.close()  # done with the database: its connection goes back (to the pool)
    time.sleep(seconds)
    return "napped"


@task(execution="async", max_attempts=1, timeout=1)
async def async_too_slow(seconds: float = 30) -> None:
    await asyncio.sleep(seconds)


@task(execution="async", max_attempts=1, timeout=1)
async def async_blocks_loop(seconds: float = 30) -> None:
    """Never awaits: cancellation cannot reach it, and it holds up its child's loop."""
    time.sleep(seconds)


@task(execution="thread", max_attempts=1, timeout=1)
def thread_too_slow(seconds: float = 30) -> None:
    """Calls progress(), where a thread past its timeout is stopped."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progress(message="working")
        time.sleep(0.05)


@task(execution="thread", max_attempts=1, timeout=1)
def thread_never_yields(seconds: float = 4) -> str:
    """Never calls progress(): nothing can stop its thread."""
    time.sleep(seconds)
    return "finished too late"


@task(execution="async", max_attempts=1)
async def async_crash() -> None:
    await asyncio.sleep(0.3)
    os._exit(1)


@task(execution="async", max_attempts=1)
async def async_exits(how: str = "exit") -> None:
    """Raises what no ``except Exception`` catches, out of an async job."""
    await asyncio.sleep(0.3)
    raise SystemExit(3) if how == "exit" else KeyboardInterrupt


# A task_started or task_finished receiver that fails, for the jobs that ask it to (the
# keyword ``receiver_fails``): a receiver's bug must not lose a job, nor those beside it.
@receiver(task_started)
@receiver(task_finished)
def _a_receiver_that_fails(sender, task_result, signal, **kwargs) -> None:
    fails = task_result.kwargs.get("receiver_fails")
    if (fails, signal) in (("started", task_started), ("finished", task_finished)):
        raise RuntimeError(f"a task_{fails} receiver failed")


@receiver(task_finished)
def _note_finished(sender, task_result, **kwargs) -> None:
    """Appends ``<job id> <status>`` to the file $TEST_SIGNAL_LOG names, if set: tests check
    that task_finished is sent once for every attempt that ran, failures included."""
    if path := os.environ.get("TEST_SIGNAL_LOG"):
        with open(path, "a") as log:
            log.write(f"{task_result.id} {task_result.status.value}\n")


@task(execution="async", max_attempts=1)
async def async_with_receiver(receiver_fails: str = "") -> str:
    await asyncio.sleep(0.3)
    return "ran"


@task(max_attempts=1)
def process_with_receiver(receiver_fails: str = "") -> str:
    time.sleep(0.3)
    return "ran"


@task(execution="thread", max_attempts=1)
def thread_with_receiver(receiver_fails: str = "") -> str:
    time.sleep(0.3)
    return "ran"


@task(takes_context=True, execution="async", max_attempts=1)
async def async_progress(context, seconds: float = 0.5) -> None:
    await aprogress(percent=50, message=f"job {context.task_result.id}")
    await asyncio.sleep(seconds)


@task(takes_context=True, execution="thread", max_attempts=1)
def thread_progress(context, seconds: float = 0.5) -> None:
    progress(percent=50, message=f"job {context.task_result.id}")
    time.sleep(seconds)


@task(execution="thread", max_attempts=1, timeout=60)
def orm_query(seconds: float = 0.2) -> int:
    """Hold a Django connection for ``seconds``: what a thread-mode job using the ORM does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s), 1", [seconds])
        return cursor.fetchone()[1]


@task(takes_context=True, max_attempts=1)
def snooze_once(context, seconds: float = 1.0) -> str:
    """Snooze on its first run, succeed on the next (the execution log counts its runs)."""
    job_id = int(context.task_result.id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM test_execution WHERE job_id = %s", [job_id])
        runs = cursor.fetchone()[0]
    _record(context.task_result.id, f"run {runs + 1}")
    if runs == 0:
        raise Snooze(seconds)
    return "woke"


@task(takes_context=True, max_attempts=3)
def record_then_return(context, value: object = None) -> object:
    """Record the attempt, then return ``value``: a return value the database refuses
    (tests/test_final_failures.py) shows each attempt that computed it."""
    _record(context.task_result.id, f"attempt {context.attempt}")
    return value


@task(takes_context=True, max_attempts=3)
def record_then_return_nan(context) -> float:
    """Record the attempt, then return NaN, which jsonb cannot store."""
    _record(context.task_result.id, f"attempt {context.attempt}")
    return float("nan")


@task(max_attempts=1)
def interrupts(message: str = "stop right there") -> None:
    """Raise KeyboardInterrupt, which the executor lets through: it ends the child."""
    raise KeyboardInterrupt(message)


# ----------------------------------------------------------------- child recycling
# (tests/test_recycling.py): which child process ran a job, and a job that leaks memory.
_leaked: list[bytearray] = []


@task(max_attempts=1)
def child_pid() -> int:
    return os.getpid()


@task(execution="async", max_attempts=1)
async def async_child_pid() -> int:
    await asyncio.sleep(0.05)
    return os.getpid()


@task(max_attempts=1)
def leak(mb: int = 200) -> int:
    """Keep ``mb`` MB alive in the child after the job (a leak), touched so it is resident."""
    _leaked.append(bytearray(b"x" * (mb * 1024 * 1024)))
    return os.getpid()
