"""Global limits under faults: a frozen or killed worker never lets a limit be passed.

The README promises that a concurrency limit holds on what really runs, not only on rows:
a frozen worker's jobs count until they are rescued, and by then its children have stopped
(self-fencing). Each test freezes or kills the worker that runs a limited queue's job, on
real processes and the real database, and reads every real run from the task's own
records (tests.tasks.tick writes a row every 0.1 s while it runs). Settings are the
suite's short ones (LEASE 3 s, heartbeat 0.5 s).
"""

import itertools
import json
import signal
from collections import defaultdict

import psutil
import pytest
from django.db.models import F

from jobqueue.models import Job, JobStatus
from tests import tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

SOLO = json.dumps({"solo": {"concurrency": 1}})


def real_runs(execution_log) -> list[tuple]:
    """(first tick, last tick, job id, attempt) of every run the task really made."""
    ticks = defaultdict(list)
    for job_id, _pid, note, at in execution_log():
        ticks[(job_id, note)].append(at)
    return sorted((min(ats), max(ats), job_id, note) for (job_id, note), ats in ticks.items())


def assert_one_at_a_time(runs: list[tuple]) -> None:
    for first, second in itertools.pairwise(runs):
        assert first[1] < second[0], (
            f"job {first[2]} ({first[3]}) still ran at {first[1].time()} when job {second[2]} "
            f"({second[3]}) began at {second[0].time()}: the limit of 1 was passed"
        )


def running_on(worker_pid: int) -> bool:
    return Job.objects.filter(
        queue="solo", status=JobStatus.RUNNING, worker__pid=worker_pid
    ).exists()


@pytest.mark.parametrize("fault", ["SIGSTOP", "SIGKILL"])
def test_a_frozen_or_killed_worker_never_lets_a_concurrency_limit_be_passed(
    start_worker, execution_log, fault
):
    """concurrency 1, two workers. The worker running the queue's job is frozen past its
    lease (SIGSTOP of the supervisor, its child left running: the jobs outlast the lease,
    so only the child's own fencing stops it) or killed with its children (SIGKILL of the
    group). The other worker takes the queue's next job only once the
    job is rescued; the frozen worker's child has stopped by then. Every job ends, and no
    two real runs of the queue ever overlap."""
    solo = tasks.tick.using(queue_name="solo")
    ids = [solo.enqueue(seconds=6).id for _ in range(3)]  # longer than the lease
    workers = [start_worker("--concurrency", "2", JOBQUEUE_QUEUES=SOLO) for _ in range(2)]
    wait_until(lambda: real_runs(execution_log), 30, "the first job started")
    victim = next(w for w in workers if running_on(w.pid))
    # The fault strikes a run its worker holds by heartbeat, not one just claimed.
    wait_until(
        lambda: Job.objects.filter(
            queue="solo",
            status=JobStatus.RUNNING,
            worker__pid=victim.pid,
            heartbeat_at__gt=F("started_at"),
        ).exists(),
        30,
        "the victim renewed its job's lease",
    )
    if fault == "SIGSTOP":
        victim.signal(signal.SIGSTOP)
    else:
        for process in [*psutil.Process(victim.pid).children(recursive=True)]:
            process.kill()
        victim.signal(signal.SIGKILL)
    try:
        wait_until(
            lambda: Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() >= 2,
            60,
            "the other worker ran jobs after the rescue",
        )
    finally:
        if fault == "SIGSTOP":
            victim.signal(signal.SIGCONT)
    wait_until(lambda: all(Job.objects.get(pk=i).is_finished for i in ids), 60, "every job ended")
    assert_one_at_a_time(real_runs(execution_log))
    rescued = [j for j in Job.objects.filter(pk__in=ids) if j.errors]
    assert [e["type"] for j in rescued for e in j.errors] == ["jobqueue.exceptions.WorkerLost"]
    assert {j.status for j in Job.objects.filter(pk__in=ids)} == {JobStatus.SUCCEEDED}
