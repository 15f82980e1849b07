"""Thread and async execution modes on real workers and real PostgreSQL.

Each test runs a real ``runworker`` with one child (``--concurrency 1``), so
the jobs it enqueues share one process: what one job does (overstay, block
its loop, crash) is seen from the jobs beside it. The workers run with the
tests' short settings (tests.conftest.WORKER_ENV: CANCEL_GRACE 1 s).
"""

import signal
from datetime import timedelta
from itertools import pairwise

import pytest

from jobqueue.models import FINISHED, Job, JobStatus
from tests import tasks
from tests.conftest import WorkerProcess, wait_until

ASYNC = ("--concurrency", "1", "--async-slots", "20")
THREADS = ("--concurrency", "1", "--threads", "8")


def jobs(results) -> list[Job]:
    return list(Job.objects.filter(pk__in=[int(r.id) for r in results]).order_by("pk"))


def job(result) -> Job:
    return Job.objects.get(pk=int(result.id))


def drain(start_worker, *options: str) -> WorkerProcess:
    """Run a worker with ``options`` until no job is ready (--burst); it must exit cleanly."""
    worker = start_worker(*options, "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    return worker


def all_at_once(rows: list[Job]) -> bool:
    """Whether every job began before any ended: they ran at the same time."""
    return max(j.started_at for j in rows) < min(j.finished_at for j in rows)


@pytest.mark.parametrize(("task", "options"), [("async_nap", ASYNC), ("thread_nap", THREADS)])
def test_one_child_runs_many_jobs_at_once(start_worker, execution_log, task, options):
    results = [getattr(tasks, task).enqueue(seconds=1) for _ in range(8)]
    drain(start_worker, *options)
    rows = jobs(results)
    assert {j.status for j in rows} == {JobStatus.SUCCEEDED}
    assert {j.attempts for j in rows} == {1}
    assert all_at_once(rows)
    assert len({pid for _, pid, _, _ in execution_log()}) >= 1
    assert len(execution_log()) == 8


@pytest.mark.parametrize(
    ("slow", "nap", "options", "not_logged"),
    [
        # asyncio cancels it at the deadline: its child is not killed
        ("async_too_slow", "async_nap", ASYNC, "killing their child"),
        # its next progress() raises: its child is not retired
        ("thread_too_slow", "thread_nap", THREADS, "thread ran past its deadline"),
    ],
    ids=["async", "thread"],
)
@pytest.mark.usefixtures("execution_log")  # the naps record their runs
def test_a_job_past_its_timeout_is_stopped_alone(start_worker, slow, nap, options, not_logged):
    late = getattr(tasks, slow).enqueue(seconds=30)
    others = [getattr(tasks, nap).enqueue(seconds=2) for _ in range(3)]
    worker = drain(start_worker, *options)
    failed = job(late)
    assert failed.status == JobStatus.FAILED
    assert failed.errors[-1]["type"] == "jobqueue.exceptions.JobTimeout"
    assert failed.errors[-1]["message"] == "the job ran past its timeout"
    assert {(j.status, j.attempts) for j in jobs(others)} == {(JobStatus.SUCCEEDED, 1)}
    assert not_logged not in worker.output()


def test_an_async_job_that_blocks_the_loop_is_killed_and_the_others_run_again(
    start_worker, execution_log
):
    """The loop is stuck, so the child is killed CANCEL_GRACE after the deadline: the job
    that blocked it spends its attempt, the ones beside it run again on the same one."""
    blocker = tasks.async_blocks_loop.enqueue(seconds=30)
    others = [tasks.async_nap.enqueue(seconds=0.5) for _ in range(4)]
    drain(start_worker, *ASYNC)
    failed = job(blocker)
    assert failed.status == JobStatus.FAILED
    assert failed.errors[-1]["type"] == "jobqueue.exceptions.JobTimeout"
    assert "killed" in failed.errors[-1]["message"]
    assert {(j.status, j.attempts, len(j.errors)) for j in jobs(others)} == {
        (JobStatus.SUCCEEDED, 1, 0)
    }


def test_a_thread_that_never_yields_retires_its_child_once_the_others_end(
    start_worker, execution_log
):
    """No signal stops a thread: its child takes no new jobs, the jobs beside it finish,
    then the child is killed (the stuck job fails as timed out) and replaced."""
    stuck = tasks.thread_never_yields.enqueue(seconds=6)
    beside = [tasks.thread_nap.enqueue(seconds=3.5) for _ in range(2)]
    worker = start_worker(*THREADS)
    wait_until(lambda: job(stuck).status == JobStatus.FAILED, 30, "the stuck job was stopped")
    later = tasks.thread_nap.enqueue(seconds=0.1)
    wait_until(lambda: job(later).status == JobStatus.SUCCEEDED, 30, "a new child ran more")
    failed = job(stuck)
    assert failed.errors[-1]["type"] == "jobqueue.exceptions.JobTimeout"
    assert "killed" in failed.errors[-1]["message"]
    assert {(j.status, j.attempts) for j in jobs(beside)} == {(JobStatus.SUCCEEDED, 1)}
    pids = {note: pid for job_id, pid, note, _ in execution_log() if job_id == int(later.id)}
    assert "thread ran past its deadline" in worker.output()
    assert pids  # the later job ran, in the replacement child


@pytest.mark.parametrize(("task", "options"), [("async_nap", ASYNC), ("thread_too_slow", THREADS)])
def test_a_running_job_is_cancelled(start_worker, execution_log, task, options):
    """Async jobs are cancelled by asyncio at once; thread jobs at their next progress()."""
    kwargs = {"seconds": 30}
    target = getattr(tasks, task).using(timeout=60).enqueue(**kwargs)
    beside = tasks.async_nap.enqueue(seconds=2) if task == "async_nap" else None
    start_worker(*options)
    wait_until(lambda: job(target).status == JobStatus.RUNNING, 30, "the job is running")
    Job.objects.filter(pk=int(target.id)).update(cancel_requested=True)
    wait_until(lambda: job(target).status == JobStatus.CANCELLED, 20, "the job was cancelled")
    assert job(target).errors[-1]["type"] == "jobqueue.exceptions.JobCancelled"
    if beside is not None:  # asyncio cancelled the one job; its child was not killed
        wait_until(lambda: job(beside).status == JobStatus.SUCCEEDED, 20, "the other job ended")
        assert job(beside).attempts == 1
        assert [n for i, _, n, _ in execution_log() if i == int(beside.id)] == ["attempt 1"]


def test_a_crash_beside_other_jobs_charges_only_the_job_that_crashes_alone(
    start_worker, execution_log
):
    """Nothing tells which job crashed the shared child: each job it ran runs again alone
    in a child, on the same attempt. The one that crashes alone spends its attempt (one
    allowed: it fails); the others finish on their first attempt, with no error."""
    crash = tasks.async_crash.enqueue()
    others = [tasks.async_nap.enqueue(seconds=2) for _ in range(4)]
    worker = start_worker(*ASYNC)
    wait_until(lambda: job(crash).status == JobStatus.FAILED, 60, "the crash was recorded")
    crashed = job(crash)
    assert crashed.attempts == 1
    assert [e["type"] for e in crashed.errors] == ["jobqueue.exceptions.ChildCrashed"]
    wait_until(
        lambda: {j.status for j in jobs(others)} == {JobStatus.SUCCEEDED}, 60, "others ran again"
    )
    assert {(j.attempts, len(j.errors)) for j in jobs(others)} == {(1, 0)}, worker.output()
    # Each ran again alone: its last start came after the one before it had finished its
    # 2 s nap (the test table's times are the database's clock_timestamp()).
    last_start = {job_id: at for job_id, _, _, at in execution_log()}
    starts = sorted(last_start.values())
    assert len(starts) == len(others)
    assert all(later - earlier >= timedelta(seconds=2) for earlier, later in pairwise(starts))
    assert "each runs again alone" in worker.output()


@pytest.mark.parametrize("finish", [True, False])
@pytest.mark.parametrize(
    ("task", "slots"), [("async_nap", "--async-slots"), ("thread_nap", "--threads")]
)
def test_sigterm_with_50_jobs_in_flight_loses_none(
    start_worker, execution_log, finish, task, slots
):
    """Within the shutdown timeout they finish; past it they are given back, not lost."""
    results = [getattr(tasks, task).enqueue(seconds=2 if finish else 60) for _ in range(50)]
    # 50 threads share a pool of 10 connections (the documented budget), not one each.
    worker = start_worker(
        "--concurrency", "1", slots, "50", "--shutdown-timeout", "20" if finish else "1",
        DJANGO_DB_POOL_SIZE="10",
    )  # fmt: skip
    wait_until(lambda: len(execution_log()) == 50, 30, "all 50 jobs began")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=40) == 0, worker.output()
    rows = jobs(results)
    if finish:
        assert {(j.status, j.attempts) for j in rows} == {(JobStatus.SUCCEEDED, 1)}
    else:
        assert {j.status for j in rows} == {JobStatus.QUEUED}
        start_worker("--concurrency", "1", slots, "50", DJANGO_DB_POOL_SIZE="10")
        wait_until(
            lambda: {j.status for j in jobs(results)} == {JobStatus.RUNNING}, 30, "they run again"
        )


def test_a_slow_job_never_holds_up_the_others(start_worker, execution_log):
    """Fairness: with a slot free, no job waits behind a slow one in its child."""
    slow = tasks.thread_nap.enqueue(seconds=4)
    quick = [tasks.thread_nap.enqueue(seconds=0.2) for _ in range(6)]
    drain(start_worker, "--concurrency", "1", "--threads", "2")
    assert max(j.finished_at for j in jobs(quick)) < job(slow).finished_at


@pytest.mark.parametrize(
    ("task", "options"), [("async_progress", ASYNC), ("thread_progress", THREADS)]
)
def test_progress_of_concurrent_jobs_goes_to_each_ones_own_row(start_worker, task, options):
    results = [getattr(tasks, task).enqueue(seconds=1) for _ in range(8)]
    drain(start_worker, *options)
    for row in jobs(results):
        assert row.status == JobStatus.SUCCEEDED
        assert row.progress_message == f"job {row.pk}"
        assert row.progress_percent == 50


@pytest.mark.parametrize("how", ["exit", "interrupt"])
def test_an_async_job_raising_systemexit_fails_alone_and_its_neighbours_finish(
    start_worker, tmp_path, how
):
    """``sys.exit()`` or KeyboardInterrupt in an async job: raised out of an asyncio task
    they stop the event loop, and the jobs beside it would never report. The culprit fails
    with its error, once, and task_finished says so, as for any failure; its neighbours,
    which have no timeout, finish."""
    culprit = tasks.async_exits.enqueue(how=how)
    neighbours = [tasks.async_with_receiver.enqueue() for _ in range(5)]
    signals = tmp_path / "task_finished"
    worker = start_worker(*ASYNC, TEST_SIGNAL_LOG=str(signals))
    wait_until(
        lambda: all(j.status in FINISHED for j in jobs([culprit, *neighbours])),
        30,
        "every job finished",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()
    failed = job(culprit)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 1)
    expected = "builtins.SystemExit" if how == "exit" else "builtins.KeyboardInterrupt"
    assert [e["type"] for e in failed.errors] == [expected]
    assert {(j.status, j.attempts, j.result) for j in jobs(neighbours)} == {
        (JobStatus.SUCCEEDED, 1, "ran")
    }
    expected_signals = [f"{culprit.id} FAILED"] + [f"{n.id} SUCCESSFUL" for n in neighbours]
    assert sorted(signals.read_text().splitlines()) == sorted(expected_signals)


@pytest.mark.parametrize(
    ("task", "options"),
    [
        ("async_with_receiver", ASYNC),
        ("thread_with_receiver", THREADS),
        ("process_with_receiver", ("--concurrency", "1")),
    ],
)
def test_a_failing_signal_receiver_loses_no_job(start_worker, task, options):
    """A task_started receiver that raises fails that attempt, before the task runs; one of
    task_finished is logged and leaves the job's outcome as the task made it. Either way the
    job and those beside it each end with one report."""
    run = getattr(tasks, task)
    at_start = run.enqueue(receiver_fails="started")
    at_finish = run.enqueue(receiver_fails="finished")
    neighbours = [run.enqueue() for _ in range(5)]
    worker = drain(start_worker, *options)
    failed = job(at_start)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 1)
    assert [(e["type"], e["message"]) for e in failed.errors] == [
        ("builtins.RuntimeError", "a task_started receiver failed")
    ]
    assert (job(at_finish).status, job(at_finish).result) == (JobStatus.SUCCEEDED, "ran")
    assert "task_finished receiver" in worker.output()
    assert {(j.status, j.result) for j in jobs(neighbours)} == {(JobStatus.SUCCEEDED, "ran")}
