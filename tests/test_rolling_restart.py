"""A rolling restart: three workers SIGTERM'd and restarted in turn under a steady stream of jobs.

0 jobs lost, 0 run twice, and no job waits longer than the shutdown timeout plus one poll.
"""

import signal
import time
from collections.abc import Callable

import pytest

from jobqueue.models import Job, Worker
from tests import tasks
from tests.conftest import WORKER_ENV, WorkerProcess, wait_until

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT = 5.0
POLL_INTERVAL = float(WORKER_ENV["JOBQUEUE_POLL_INTERVAL"])


def test_a_rolling_restart_loses_nothing_and_runs_nothing_twice(
    start_worker: Callable, execution_log: Callable
) -> None:
    enqueued: list[int] = []

    def stream(seconds: float) -> None:
        """One short job every 20 ms (each attempt records itself, then runs 50 ms)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            enqueued.append(int(tasks.record_then_sleep.enqueue(seconds=0.05).id))
            time.sleep(0.02)

    def worker() -> WorkerProcess:
        return start_worker(
            "--concurrency", "2", "--shutdown-timeout", str(SHUTDOWN_TIMEOUT)
        )  # fmt: skip

    def stream_until(done: Callable[[], bool], what: str) -> None:
        """Stream until ``done``, and at least 0.1 s: jobs arrive during every restart."""
        deadline = time.monotonic() + 60
        stream(0.1)
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            stream(0.1)

    def three_registered() -> bool:
        return Worker.objects.count() == 3

    workers = [worker() for _ in range(3)]
    wait_until(three_registered, 60, "three workers registered")  # before the stream begins
    stream(1.0)
    for i in range(3):  # as a deployment does: stop one, start its successor, wait until it is up
        workers[i].signal(signal.SIGTERM)
        stream_until(lambda w=workers[i]: w.proc.poll() is not None, "the worker exited")
        assert workers[i].proc.returncode == 0, workers[i].output()
        workers[i] = worker()
        stream_until(three_registered, "its successor registered")
        stream(1.0)
    wait_until(
        lambda: Job.objects.filter(status="succeeded").count() == len(enqueued),
        60,
        "every job succeeded",
    )
    executions = [row[0] for row in execution_log()]
    assert sorted(executions) == sorted(enqueued), "a job was lost or ran twice"
    waits = [
        (started - created).total_seconds()
        for created, started in Job.objects.values_list("created_at", "started_at")
    ]
    assert max(waits) <= SHUTDOWN_TIMEOUT + POLL_INTERVAL, max(waits)
