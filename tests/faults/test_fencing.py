"""Fencing and self-fencing on real worker processes: a job never runs twice at once.

Each test stages one interleaving that broke the promise before attempts were
fenced (issue: "a job never runs twice at once"), with real processes, real
signals and the real database. Settings are the suite's short ones
(tests.conftest.WORKER_ENV): LEASE 3 s, a heartbeat every 0.5 s, so a worker
whose heartbeat stops stops its jobs 2.4 s after its last beat (fence.py).
"""

import itertools
import signal
import time
from collections import defaultdict
from datetime import datetime, timedelta

import psutil
import pytest
from django.utils import timezone

from jobqueue.models import Job, JobStatus, Worker
from tests import tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def job(pk: int | str) -> Job:
    return Job.objects.get(pk=int(pk))


def runs_of(execution_log, job_id: int | str) -> dict[str, tuple[datetime, datetime]]:
    """Each attempt's first and last tick (tests.tasks.tick) of one job."""
    seen: dict[str, list[datetime]] = defaultdict(list)
    for row_job, _pid, note, at in execution_log():
        if row_job == int(job_id):
            seen[note].append(at)
    return {note: (min(ats), max(ats)) for note, ats in seen.items()}


def ticks(execution_log, job_id: int | str, attempt: str) -> int:
    """How many ticks (tests.tasks.tick) ``attempt`` of one job has written."""
    return sum(
        1 for row_job, _, note, _ in execution_log() if (row_job, note) == (int(job_id), attempt)
    )


def leased_by_a_heartbeat(pk: int | str) -> bool:
    """Whether the running job's lease has been renewed by its worker's heartbeat since
    the claim (the row's heartbeat_at has moved past its started_at)."""
    running = job(pk)
    return running.status == JobStatus.RUNNING and running.heartbeat_at > running.started_at


def assert_no_overlap(runs: dict[str, tuple[datetime, datetime]]) -> None:
    spans = sorted(runs.items(), key=lambda item: item[1][0])
    for (first, (_, first_end)), (second, (second_start, _)) in itertools.pairwise(spans):
        assert first_end < second_start, (
            f"{first} still ran at {first_end.time()} when {second} began at "
            f"{second_start.time()}: the job ran twice at once"
        )


def test_a_stalled_supervisor_stops_its_job_before_it_is_rescued_and_claimed_again(
    start_worker, execution_log
):
    """The supervisor stalls past the lease while its child runs attempt 1; the job is
    rescued and this same worker claims it again as attempt 2 once it wakes. Attempt 1
    must have stopped by itself before the rescue, and its outcome must not land on
    attempt 2."""
    result = tasks.tick.using(queue_name="a").enqueue(seconds=6)
    stalled = start_worker("--queues", "a", "--concurrency", "2")
    start_worker("--queues", "b", "--concurrency", "1")  # only rescues: serves no job's queue
    wait_until(lambda: runs_of(execution_log, result.id), 30, "attempt 1 started")
    wait_until(lambda: leased_by_a_heartbeat(result.id), 30, "the worker renewed attempt 1")
    stalled.signal(signal.SIGSTOP)
    try:
        wait_until(
            lambda: job(result.id).status == JobStatus.QUEUED and job(result.id).attempts == 1,
            30,
            "the other worker rescued the job",
        )
    finally:
        stalled.signal(signal.SIGCONT)
    wait_until(lambda: job(result.id).is_finished, 60, "the job finished")

    done = job(result.id)
    runs = runs_of(execution_log, result.id)
    assert set(runs) == {"attempt 1", "attempt 2"}
    assert_no_overlap(runs)
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 2
    assert done.result["attempt"] == 2, "attempt 1's outcome was recorded on attempt 2"
    assert [e["type"] for e in done.errors] == ["jobqueue.exceptions.WorkerLost"]
    assert [r["outcome"] for r in done.runs] == ["lost", "succeeded"]
    assert "lease was about to run out" in stalled.output() or "stops itself" in stalled.output()


@pytest.mark.parametrize(
    ("execution", "options"),
    [("process", ()), ("thread", ("--threads", "4")), ("async", ("--async-slots", "4"))],
)
def test_a_child_of_a_frozen_supervisor_stops_on_its_own(
    start_worker, execution_log, execution, options
):
    """Children must not depend on a live supervisor for fencing: with the supervisor
    stopped for good, the child ends its job before the lease can run out (in every
    execution mode: the watchdog sees concurrent jobs too)."""
    task = tasks.async_tick if execution == "async" else tasks.tick.using(execution=execution)
    result = task.enqueue(seconds=30)
    frozen = start_worker("--concurrency", "1", *options)
    wait_until(lambda: runs_of(execution_log, result.id), 30, "the job started")
    [child] = psutil.Process(frozen.pid).children()
    frozen.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        # Its parent is stopped and cannot reap it: an exited child stays a zombie.
        wait_until(lambda: child.status() == psutil.STATUS_ZOMBIE, 10, "the child ended")
        lived = time.monotonic() - stopped_at
        [(_, last)] = runs_of(execution_log, result.id).values()
        heartbeat = Worker.objects.get(pid=frozen.pid).last_heartbeat
    finally:
        frozen.signal(signal.SIGCONT)
    assert lived < 3.0, f"the child ran {lived:.1f} s after its supervisor froze"
    assert (last - heartbeat).total_seconds() < 3.0, "the child ran past its lease"


def test_a_job_rescued_while_its_worker_was_cut_off_is_stopped_there(start_worker, execution_log):
    """Nothing may keep running a job that was rescued away from its worker."""
    result = tasks.tick.enqueue(seconds=30)
    worker = start_worker("--concurrency", "1")
    wait_until(lambda: runs_of(execution_log, result.id), 30, "the job started")
    # Rescue it from under a live worker, as another worker would after a lost lease.
    Job.objects.filter(pk=result.id).update(status=JobStatus.QUEUED, lease_token=None)
    wait_until(lambda: "taken from this worker" in worker.output(), 10, "the worker noticed")
    wait_until(
        lambda: job(result.id).status == JobStatus.RUNNING and job(result.id).attempts == 2,
        10,
        "attempt 2 started",
    )
    # Ten ticks of attempt 2 (a second of its run, by its own count): an attempt 1 still
    # running beside it would have ticked meanwhile too.
    wait_until(
        lambda: ticks(execution_log, result.id, "attempt 2") >= 10, 30, "attempt 2 ticked ten times"
    )
    assert_no_overlap(runs_of(execution_log, result.id))


def test_large_non_ascii_arguments_never_stall_the_supervisor(start_worker, execution_log):
    """A pipeline budget counted in characters let 240 kB of emoji be sent to a child busy
    with a usually quick job that ran long: the send blocked, the heartbeat went stale, and
    the jobs in hand were rescued and ran twice. Every job must run exactly once."""
    emoji = "\U0001f600" * 65_000  # 65,000 characters, 260,000 bytes as UTF-8
    warm = [tasks.record_payload.enqueue(n=i) for i in range(200)]  # the task is known short
    long = [tasks.record_payload.enqueue(n=i, seconds=6) for i in range(2)]  # both children
    worker = start_worker("--concurrency", "2")
    rescuer = start_worker("--queues", "elsewhere", "--concurrency", "1")
    long_ids = {int(r.id) for r in long}
    wait_until(
        lambda: long_ids <= {row[0] for row in execution_log()}, 30, "both children are busy"
    )
    heavy = [tasks.record_payload.enqueue(n=i, payload=emoji) for i in range(6)]
    wait_until(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 208, 60, "all ran")
    # A job run twice would show by now: both supervisors heart-beat (and the rescuer looked
    # for lost jobs) after the last one finished, on the database's clock.
    last_finished = max(Job.objects.values_list("finished_at", flat=True))
    wait_until(
        lambda: (
            Worker.objects.filter(
                pid__in=[worker.pid, rescuer.pid], last_heartbeat__gt=last_finished
            ).count()
            == 2
        ),
        30,
        "both workers heart-beat after the last job finished",
    )

    executions = sorted(row[0] for row in execution_log())
    assert executions == sorted(int(r.id) for r in warm + long + heavy), "a job ran twice"
    assert "rescued" not in rescuer.output()
    assert not Job.objects.exclude(status=JobStatus.SUCCEEDED).exists()
    assert set(Job.objects.values_list("attempts", flat=True)) == {1}
    assert worker.proc.poll() is None, worker.output()


def test_a_deleted_worker_row_is_recreated_and_its_job_finishes(start_worker, execution_log):
    result = tasks.tick.enqueue(seconds=3)
    worker = start_worker("--concurrency", "1")
    wait_until(lambda: runs_of(execution_log, result.id), 30, "the job started")
    Worker.objects.filter(pid=worker.pid).delete()  # as the admin or purge_jobs may
    assert job(result.id).worker_id is None
    wait_until(lambda: Worker.objects.filter(pid=worker.pid).exists(), 10, "it registered again")
    wait_until(lambda: job(result.id).worker_id is not None, 10, "it re-adopted its job")
    wait_until(lambda: job(result.id).is_finished, 30, "the job finished")
    done = job(result.id)
    assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 1)
    assert worker.proc.poll() is None, worker.output()
    assert "Traceback" not in worker.output()


def test_no_rescue_within_one_lease_of_a_workers_connection(start_worker):
    """After an outage every heartbeat in the table is old, and their workers may only now
    be reconnecting: a worker that has just (re)connected rescues nothing for one lease."""
    result = tasks.tick.enqueue(seconds=1)
    Job.objects.filter(pk=result.id).update(
        status=JobStatus.RUNNING,
        attempts=1,
        lease_token=1,
        started_at=timezone.now() - timedelta(seconds=60),
        heartbeat_at=timezone.now() - timedelta(seconds=60),
    )
    start_worker("--concurrency", "1")
    started = time.monotonic()
    wait_until(lambda: job(result.id).attempts == 2, 30, "the stale job was rescued and re-run")
    assert time.monotonic() - started >= 2.5, "rescued within a lease (3 s) of connecting"
