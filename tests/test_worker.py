"""runworker against real PostgreSQL with real processes: the failure modes a queue must survive."""

import contextlib
import os
import signal
from datetime import datetime, timedelta

import psutil
import pytest
from django.db import connection
from django.utils import timezone

import demo
from jobqueue.models import Job, JobStatus, Worker
from tests import tasks
from tests.conftest import db_now, wait_until


def job(pk: int | str) -> Job:
    return Job.objects.get(pk=int(pk))


def statuses() -> dict[str, int]:
    return {s: Job.objects.filter(status=s).count() for s in JobStatus.values}


@pytest.mark.slow
def test_three_workers_run_every_job_exactly_once(start_worker, execution_log):
    demo_jobs = [tasks.record.enqueue(n=i) for i in range(2000)]
    workers = [start_worker("--concurrency", "2", "--burst") for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=240) == 0, worker.output()

    assert statuses()[JobStatus.SUCCEEDED] == len(demo_jobs)
    assert set(Job.objects.values_list("attempts", flat=True)) == {1}
    executions = [row[0] for row in execution_log()]
    assert len(executions) == 2000
    assert len(set(executions)) == 2000, "a job ran twice"
    # The work was shared: every worker ran some of it.
    assert len({row[1] for row in execution_log()}) >= 3


def test_short_jobs_with_large_arguments_and_results_do_not_stall_the_worker(start_worker):
    """Short jobs are sent to children in batches; large ones must not fill a child's socket
    while it is busy (the supervisor would block on it while the child blocks on its report)."""
    big = "x" * 150_000
    results = [demo.echo.enqueue(i=i, payload=big) for i in range(40)]
    results += [demo.echo.enqueue(i=i) for i in range(400)]
    worker = start_worker("--concurrency", "2", "--burst")
    assert worker.wait(timeout=120) == 0, worker.output()
    assert statuses()[JobStatus.SUCCEEDED] == len(results)
    assert job(results[0].id).result == {"i": 0, "payload": big}


def test_job_of_a_killed_worker_is_rescued_and_finishes_elsewhere(start_worker, execution_log):
    result = tasks.record_then_sleep.enqueue(seconds=2)
    doomed = start_worker("--concurrency", "1")
    wait_until(execution_log, 30, "the job started")
    children = psutil.Process(doomed.pid).children()
    doomed.signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    wait_until(
        lambda: not any(c.is_running() and c.status() != "zombie" for c in children),
        10,
        "the killed worker's child died with it",
    )

    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).status == JobStatus.SUCCEEDED, 30, "the job was rescued")
    rescued = job(result.id)
    assert rescued.attempts == 2
    assert [e["type"] for e in rescued.errors] == ["jobqueue.exceptions.WorkerLost"]
    assert [row[2] for row in execution_log()] == ["attempt 1", "attempt 2"]


def test_a_worker_with_a_shorter_lease_rescues_by_the_holders_lease(start_worker, execution_log):
    """A rolling deploy that shortens LEASE (15 s to 3 s, both valid): the new worker must
    wait out the old worker's lease before it takes its jobs, not its own, or the healthy
    jobs of the old one, whose heartbeats come every 5 s, run twice."""
    healthy = tasks.record_then_sleep.enqueue(seconds=20)
    start_worker("--concurrency", "1", JOBQUEUE_LEASE="15", JOBQUEUE_HEARTBEAT_INTERVAL="5")
    wait_until(execution_log, 30, "the job runs on the worker with the long lease")
    # A job truly lost, its worker quiet for an hour: the sign that the new worker rescues.
    gone = Worker.objects.create(
        hostname="gone", pid=1, concurrency=1, last_heartbeat=timezone.now() - timedelta(hours=1)
    )
    lost = demo.echo.enqueue()
    hour_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=lost.id).update(
        status=JobStatus.RUNNING, worker=gone, heartbeat_at=hour_ago, started_at=hour_ago,
        attempts=1, lease_token=1,
    )  # fmt: skip
    start_worker("--concurrency", "1")  # the tests' lease: 3 s, rescuing every 0.75 s
    wait_until(lambda: job(lost.id).status != JobStatus.RUNNING, 30, "the lost job was rescued")
    # From then on it rescues every 0.75 s, and in any 6 s the healthy job's heartbeat is
    # older than 3 s for some of them (it is renewed every 5 s): each would have taken it.
    rescuing_since = datetime.fromisoformat(job(lost.id).errors[-1]["at"])
    wait_until(lambda: db_now() > rescuing_since + timedelta(seconds=6), 30, "6 s of rescues")
    running = job(healthy.id)
    assert (running.status, running.attempts) == (JobStatus.RUNNING, 1), "it was rescued"

    wait_until(lambda: job(healthy.id).status == JobStatus.SUCCEEDED, 60, "the job finished")
    finished = job(healthy.id)
    assert (finished.attempts, finished.errors) == (1, [])
    assert [row[2] for row in execution_log() if row[0] == int(healthy.id)] == ["attempt 1"]


def test_a_crashing_job_takes_down_only_its_child(start_worker):
    crash = demo.crash.enqueue(how="exit")
    segfault = demo.crash.enqueue(how="segfault")
    echoes = [demo.echo.enqueue(i=i) for i in range(20)]
    worker = start_worker("--concurrency", "2", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()

    assert all(job(r.id).status == JobStatus.SUCCEEDED for r in echoes)
    crashed = job(crash.id)
    assert crashed.status == JobStatus.FAILED
    assert crashed.error["type"] == "jobqueue.exceptions.ChildCrashed"
    assert "exited with code 1" in crashed.error["message"]
    assert "SIGSEGV" in job(segfault.id).error["message"]


def test_a_crashed_job_with_attempts_left_is_retried(start_worker):
    result = demo.crash.using(max_attempts=2).enqueue(how="kill")
    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).status == JobStatus.FAILED, 15, "both attempts crashed")
    crashed = job(result.id)
    assert crashed.status == JobStatus.FAILED
    assert crashed.attempts == 2
    assert [e["message"] for e in crashed.errors] == ["the child process was killed by SIGKILL"] * 2


def test_sigterm_lets_the_running_job_finish_and_exits_zero(start_worker, execution_log):
    result = tasks.record_then_sleep.enqueue(seconds=1.5)
    worker = start_worker("--concurrency", "1", "--shutdown-timeout", "20")
    wait_until(execution_log, 30, "the job started")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    assert job(result.id).status == JobStatus.SUCCEEDED
    assert not Job.objects.running().exists()


def test_sigterm_gives_back_a_job_that_outlives_the_shutdown_timeout(start_worker, execution_log):
    result = tasks.record_then_sleep.enqueue(seconds=60)
    worker = start_worker("--concurrency", "1", "--shutdown-timeout", "1")
    wait_until(execution_log, 30, "the job started")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, worker.output()
    given_back = job(result.id)
    assert given_back.status == JobStatus.QUEUED
    assert given_back.attempts == 0, "an interrupted attempt is refunded"
    assert given_back.worker_id is None
    assert not Job.objects.running().exists()


def test_worker_reconnects_after_its_connection_is_killed(start_worker):
    first = [demo.echo.enqueue(i=i) for i in range(10)]
    start_worker("--concurrency", "2")
    wait_until(
        lambda: all(job(r.id).status == JobStatus.SUCCEEDED for r in first),
        30,
        "the first jobs ran",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        assert cursor.fetchall(), "no worker connection was found to kill"
    second = [demo.echo.enqueue(i=i) for i in range(10)]
    wait_until(
        lambda: all(job(r.id).status == JobStatus.SUCCEEDED for r in second),
        60,
        "the worker reconnected and ran the jobs enqueued after the kill",
    )


def test_failed_attempts_are_retried_with_backoff_and_kept(start_worker):
    result = tasks.flaky.enqueue(failures=2)
    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).status == JobStatus.SUCCEEDED, 60, "the third attempt passed")
    done = job(result.id)
    assert done.attempts == 3
    assert done.result == 3
    assert [e["attempt"] for e in done.errors] == [1, 2]
    assert all(e["type"] == "builtins.ValueError" for e in done.errors)
    assert "fails on purpose" in done.errors[0]["traceback"]


def test_a_job_that_keeps_failing_ends_failed(start_worker):
    result = tasks.flaky.using(max_attempts=2).enqueue(failures=5)
    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).status == JobStatus.FAILED, 60, "the job failed for good")
    assert job(result.id).attempts == 2
    assert len(job(result.id).errors) == 2


def test_timeouts_stop_the_job_and_count_as_a_failed_attempt(start_worker):
    """The job clock raises JobTimeout inside the task at its timeout; a task that swallows it
    is killed by the supervisor CANCEL_GRACE later. Each ends with its own message, so neither
    path can pass for the other (nor for a crash)."""
    polite = tasks.too_slow.enqueue()
    stubborn = tasks.swallows_timeout.enqueue(seconds=60)
    after = demo.echo.enqueue(ok=True)
    worker = start_worker("--concurrency", "2", "--burst", JOBQUEUE_CANCEL_GRACE="3")
    assert worker.wait(timeout=30) == 0, worker.output()

    timed_out = job(polite.id)
    assert timed_out.status == JobStatus.FAILED
    assert timed_out.error["type"] == "jobqueue.exceptions.JobTimeout"
    assert timed_out.error["message"] == "the job ran past its timeout"  # raised in the task
    assert "time.sleep(seconds)" in timed_out.error["traceback"]
    # At its 1 s timeout, not at the supervisor's kill 3 s after it.
    assert timed_out.finished_at - timed_out.started_at < timedelta(seconds=3.5)
    killed = job(stubborn.id)
    assert killed.status == JobStatus.FAILED
    assert killed.error["type"] == "jobqueue.exceptions.JobTimeout"
    assert killed.error["message"] == "ran past its timeout of 1 s and was killed"
    assert job(after.id).status == JobStatus.SUCCEEDED


def test_jobs_are_claimed_by_priority_then_schedule_then_creation(start_worker, execution_log):
    now = timezone.now()
    tasks.note_order.using(priority=0).enqueue(label="low-1")
    tasks.note_order.using(priority=0).enqueue(label="low-2")
    tasks.note_order.using(priority=50).enqueue(label="high")
    tasks.note_order.using(priority=0, run_after=now - timedelta(hours=1)).enqueue(label="low-old")
    tasks.note_order.using(priority=-5).enqueue(label="lowest")
    worker = start_worker("--concurrency", "1", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    assert [row[2] for row in execution_log()] == ["high", "low-old", "low-1", "low-2", "lowest"]


def test_delayed_jobs_wait_for_their_time(start_worker):
    result = demo.echo.using(run_after=timezone.now() + timedelta(seconds=2)).enqueue()
    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).status == JobStatus.SUCCEEDED, 30, "the delayed job ran")
    ran = job(result.id)
    assert ran.started_at >= ran.scheduled_at


def test_queue_selection(start_worker):
    mine = demo.echo.using(queue_name="reports").enqueue()
    other = demo.echo.using(queue_name="emails").enqueue()
    worker = start_worker("--queues", "reports", "--burst")
    assert worker.wait(timeout=30) == 0, worker.output()
    assert job(mine.id).status == JobStatus.SUCCEEDED
    assert job(other.id).status == JobStatus.QUEUED


def test_cancel_a_queued_job_and_it_never_runs(start_worker):
    result = demo.echo.enqueue()
    Job.objects.filter(pk=result.id).cancel()
    worker = start_worker("--burst")
    assert worker.wait(timeout=30) == 0
    cancelled = job(result.id)
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.attempts == 0
    assert cancelled.error["type"] == "jobqueue.exceptions.JobCancelled"


def test_cancel_a_running_job_stops_it_at_its_next_progress_call(start_worker):
    """progress() raises JobCancelled: with a grace period far longer than the check window,
    the supervisor's kill cannot be what stops the job."""
    result = demo.sleep.enqueue(seconds=60)
    start_worker(JOBQUEUE_CANCEL_GRACE="60")
    wait_until(lambda: job(result.id).progress_updated_at, 30, "the job reported progress")
    Job.objects.filter(pk=result.id).cancel()
    wait_until(lambda: job(result.id).status == JobStatus.CANCELLED, 10, "the job stopped")
    error = job(result.id).error
    assert error["type"] == "jobqueue.exceptions.JobCancelled"
    assert error["message"] == f"job {result.id} was cancelled"
    assert "in progress" in error["traceback"]  # raised by progress(), inside the task


def test_a_job_that_ignores_cancel_is_stopped_after_the_grace_period(start_worker):
    result = tasks.ignore_cancel.enqueue(seconds=60)
    start_worker()
    wait_until(lambda: job(result.id).status == JobStatus.RUNNING, 30, "the job started")
    Job.objects.filter(pk=result.id).cancel()
    # Seen at the next heartbeat (0.5 s), killed CANCEL_GRACE (1 s) later.
    wait_until(lambda: job(result.id).status == JobStatus.CANCELLED, 10, "the child was killed")
    error = job(result.id).error
    assert error["type"] == "jobqueue.exceptions.JobCancelled"
    assert "ignoring the request" in error["message"]


def test_progress_is_visible_from_another_connection_while_running(start_worker):
    result = demo.progress.enqueue(steps=4, step_seconds=0.5)
    start_worker()
    seen: set[str] = set()

    def observe() -> bool:
        current = job(result.id)
        if current.status == JobStatus.RUNNING and current.progress_message:
            seen.add(current.progress_message)
        return current.status == JobStatus.SUCCEEDED

    wait_until(observe, 30, "the pipeline finished")
    assert len(seen) >= 2, seen
    assert job(result.id).progress_percent == 100


def test_max_jobs_exits_after_that_many(start_worker):
    for i in range(5):
        demo.echo.enqueue(i=i)
    worker = start_worker("--max-jobs", "2")
    assert worker.wait(timeout=30) == 0, worker.output()
    assert statuses()[JobStatus.SUCCEEDED] == 2
    assert statuses()[JobStatus.QUEUED] == 3


def test_worker_registers_and_deregisters(start_worker):
    worker = start_worker("--concurrency", "2", "--queues", "a,b")
    wait_until(lambda: Worker.objects.filter(pid=worker.pid).exists(), 30, "the worker registered")
    row = Worker.objects.get(pid=worker.pid)
    assert row.concurrency == 2
    assert row.queues == ["a", "b"]
    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=30) == 0
    assert not Worker.objects.filter(pid=worker.pid).exists()


def test_runworker_rejects_bad_options(start_worker):
    worker = start_worker("--concurrency", "0")
    assert worker.wait(timeout=30) != 0
    assert "must be at least 1" in worker.output()
    assert os.path.exists(worker.log)


@pytest.mark.django_db(transaction=True)
def test_after_a_reconnect_jobs_whose_claim_answer_was_lost_go_back_to_the_queue():
    """A claim can commit while its answer is lost with the connection: the worker never
    got those jobs, and its heartbeat would keep them leased for ever."""
    from jobqueue import queries
    from jobqueue.worker.supervisor import Supervisor, WorkerOptions

    lost, kept = demo.echo.enqueue(), demo.echo.enqueue()
    supervisor = Supervisor(WorkerOptions())
    try:
        assert supervisor._connect()
        with supervisor.db.cursor() as cursor:
            queries.claim(cursor, worker=supervisor.worker_id, demand=2, queues=())
            rows = queries.claimed(cursor)
        supervisor.dispatcher.take([r for r in rows if r[0] == int(kept.id)])
        supervisor.session.lost(RuntimeError("the claim's answer never arrived"))
        assert supervisor._connect()
    finally:
        supervisor.session.close()

    given_back = job(lost.id)
    assert (given_back.status, given_back.attempts, given_back.worker_id) == ("queued", 0, None)
    assert job(kept.id).status == JobStatus.RUNNING


def test_a_worker_holding_more_jobs_than_one_notify_can_name_gives_them_all_back(
    start_worker, execution_log
):
    """A rolling deploy stops a worker that holds 1,300 async jobs with ids of seven digits,
    more than one NOTIFY payload can name (8000 bytes): every job goes back to the queue at
    once, its attempt refunded, none left to wait out the lease and be charged as lost."""
    from django.tasks import task_backends

    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('jobqueue_job', 'id'), 1000000)")
    held = 1300
    task_backends["default"].enqueue_many(tasks.async_nap, [((), {"seconds": 25})] * held)
    worker = start_worker("--concurrency", "3", "--async-slots", "500", "--shutdown-timeout", "1")
    wait_until(lambda: len(execution_log()) == held, 120, "every job runs in a child")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.output()
    assert f"gave back {held} unfinished jobs" in worker.output()
    given_back = Job.objects.filter(status=JobStatus.QUEUED, attempts=0, worker_id=None)
    assert given_back.count() == held, statuses()
    assert not Job.objects.exclude(errors=[]).exists()


def test_short_jobs_are_not_queued_behind_a_long_one(start_worker):
    """Short jobs are sent to children several at a time; none may wait in a child's queue
    behind a long job while the other child could run it."""
    teach = [demo.echo.enqueue(i=i) for i in range(300)]  # the worker learns echo is short
    long = tasks.ignore_cancel.enqueue(seconds=4)
    after = [demo.echo.enqueue(i=i) for i in range(300)]
    worker = start_worker("--concurrency", "2", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()

    assert statuses()[JobStatus.SUCCEEDED] == len(teach) + 1 + len(after)
    # Outcomes are written in batches, so a short job stuck behind the long one would
    # share its finish time; every short job should be done long before that.
    cutoff = job(long.id).finished_at - timedelta(seconds=2)
    late = [r.id for r in after if job(r.id).finished_at > cutoff]
    assert not late, f"{len(late)} short jobs waited behind the long one"


def test_children_die_with_their_supervisor(start_worker, execution_log):
    """PR_SET_PDEATHSIG: the job runs far longer than the check window, and the lease is
    long enough that the child's own fence (at 4/5 of it) falls far outside it too, so
    nothing but the kernel's kill can end the child within it."""
    tasks.record_then_sleep.enqueue(seconds=60)
    doomed = start_worker(
        "--concurrency", "1", JOBQUEUE_LEASE="60", JOBQUEUE_HEARTBEAT_INTERVAL="5"
    )
    wait_until(execution_log, 30, "the job started")
    children = psutil.Process(doomed.pid).children()
    assert children, "the worker has no child process"
    try:
        doomed.signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        wait_until(
            lambda: not any(c.is_running() and c.status() != "zombie" for c in children),
            5,
            "the killed worker's child died with it",
        )
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()


def test_a_second_sigterm_stops_at_once(start_worker, execution_log):
    result = tasks.record_then_sleep.enqueue(seconds=60)
    worker = start_worker("--concurrency", "1", "--shutdown-timeout", "60")
    wait_until(execution_log, 30, "the job started")
    worker.signal(signal.SIGTERM)
    wait_until(lambda: "stopping (got SIGTERM)" in worker.output(), 30, "the worker took it")
    took_it = db_now()
    wait_until(
        lambda: (job(result.id).progress_updated_at or took_it) > took_it,
        30,
        "the job reported progress after the first SIGTERM",
    )
    assert worker.proc.poll() is None, "the first SIGTERM lets the running job go on"
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0, worker.output()
    given_back = job(result.id)
    assert (given_back.status, given_back.attempts) == (JobStatus.QUEUED, 0)


def test_an_idle_worker_wakes_on_notify_not_on_its_poll(start_worker):
    """Only the insert's NOTIFY can start the job within the bound: the poll is a minute."""
    start_worker("--concurrency", "1", JOBQUEUE_POLL_INTERVAL="60")
    first = demo.echo.enqueue()
    wait_until(lambda: job(first.id).status == JobStatus.SUCCEEDED, 30, "the first job ran")
    # Once its ack has committed, no claim is pending (a wanted claim travels with the ack,
    # in its transaction, and found nothing): within the minute only a NOTIFY wakes it.
    result = demo.echo.enqueue()
    wait_until(lambda: job(result.id).status == JobStatus.SUCCEEDED, 30, "it woke on NOTIFY")


def test_outcomes_wait_while_the_database_is_down_and_reconnects_back_off(
    start_worker, execution_log, db_proxy
):
    """The worker reaches the database through a proxy the test takes down for 6 s: the
    child finishes its job meanwhile, its outcome waits in the supervisor, reconnection
    attempts back off (0.5 s doubling, at most a quarter of the lease: 2.5 s here), and
    once the database is back the outcome is written: the job ran once and succeeded on
    its first attempt. The lease (10 s) outlasts the outage, so the child's own fence
    (4/5 of it) never stops the 2 s job however slowly a busy machine runs it."""
    proxy, url = db_proxy
    result = tasks.record_then_sleep_quietly.enqueue(seconds=2)
    worker = start_worker(
        "--concurrency", "1", DATABASE_URL=url, JOBQUEUE_LEASE="10", JOBQUEUE_HEARTBEAT_INTERVAL="1"
    )
    wait_until(execution_log, 30, "the job started")
    # The outage is a duration: 6 s on the database's clock (a busy host may make it longer).
    down_from = db_now()
    proxy.refuse()
    wait_until(lambda: (db_now() - down_from).total_seconds() >= 6, 60, "6 s went by")
    attempts = proxy.refused
    down_for = (db_now() - down_from).total_seconds()
    assert job(result.id).status == JobStatus.RUNNING, "nothing could be written meanwhile"
    proxy.restore()
    wait_until(lambda: job(result.id).status == JobStatus.SUCCEEDED, 30, "the outcome was written")

    assert worker.proc.poll() is None, worker.output()
    done = job(result.id)
    assert done.attempts == 1 and done.errors == []
    assert [row[2] for row in execution_log()] == ["attempt 1"], "the job ran once"
    # Attempts at about 0.5, 1.5, 3.5, 6 s, then one every 2.5 s: 4 in 6 s. Without the
    # backoff there would be one every 0.5 s, 12 in 6 s.
    assert 2 <= attempts <= 4 + max(0.0, down_for - 6) / 2.5 + 1, (attempts, down_for)


def test_a_snoozed_job_runs_again_later_without_spending_an_attempt(start_worker, execution_log):
    """raise Snooze(1): back to the queue, due a second later, the attempt refunded (the task
    allows one), no error; its history shows the snoozed run."""
    result = tasks.snooze_once.enqueue(seconds=1)
    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).status == JobStatus.SUCCEEDED, 30, "the job woke and ran")
    woke = job(result.id)
    assert woke.attempts == 1
    assert woke.errors == []
    assert [run["outcome"] for run in woke.runs] == ["snoozed", "succeeded"]
    (_, _, first, snoozed_at), (_, _, second, woke_at) = execution_log()
    assert (first, second) == ("run 1", "run 2")
    assert (woke_at - snoozed_at).total_seconds() >= 1.0, "it ran again before it was due"
    # Due one second after the snooze was recorded, on the database's clock (the claim's).
    recorded = datetime.fromisoformat(woke.runs[0]["finished_at"])
    assert woke.scheduled_at == recorded + timedelta(seconds=1)
