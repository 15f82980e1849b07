"""Outcomes under fault: cancel wins, poison results fail only their job, a timeout in a
query leaves the child clean. Real worker processes against the real database."""

import signal

import pytest
from django.db import connection

import demo
from jobqueue.models import Job, JobStatus
from tests import tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

# Cancel requests must win over these paths by themselves, not by the grace-period
# kill: a grace far longer than the tests keeps the kill out of the way.
PATIENT = {"JOBQUEUE_CANCEL_GRACE": "60"}


def job(pk: int | str) -> Job:
    return Job.objects.get(pk=int(pk))


def running(pk: int | str) -> bool:
    return job(pk).status == JobStatus.RUNNING


def test_cancel_wins_over_a_retry(start_worker):
    """An attempt that fails after its job's cancel was requested ends the job cancelled;
    before, the failure re-queued it and the claim forgot the request."""
    result = tasks.fail_after.enqueue(seconds=2)
    start_worker("--concurrency", "1", **PATIENT)
    wait_until(lambda: running(result.id), 30, "the job started")
    Job.objects.filter(pk=result.id).cancel()
    wait_until(lambda: job(result.id).is_finished, 30, "the job finished")
    done = job(result.id)
    assert (done.status, done.attempts) == (JobStatus.CANCELLED, 1)
    assert done.errors[-1]["type"] == "builtins.RuntimeError"


def test_cancel_wins_over_a_give_back_at_shutdown(start_worker):
    result = tasks.ignore_cancel.enqueue(seconds=30)
    worker = start_worker("--concurrency", "1", "--shutdown-timeout", "0.5", **PATIENT)
    wait_until(lambda: running(result.id), 30, "the job started")
    Job.objects.filter(pk=result.id).cancel()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    done = job(result.id)
    assert done.status == JobStatus.CANCELLED
    assert done.errors[-1]["type"] == "jobqueue.exceptions.JobCancelled"
    assert not Job.objects.running().exists()


def test_cancel_wins_over_a_rescue(start_worker):
    result = tasks.ignore_cancel.enqueue(seconds=30)
    doomed = start_worker("--concurrency", "1", **PATIENT)
    wait_until(lambda: running(result.id), 30, "the job started")
    Job.objects.filter(pk=result.id).cancel()
    doomed.signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).is_finished, 30, "the job was rescued")
    assert job(result.id).status == JobStatus.CANCELLED


@pytest.mark.parametrize("kind", sorted(tasks.POISON))
def test_an_unstorable_result_fails_only_its_job(start_worker, kind):
    poison = tasks.returns_poison.enqueue(kind=kind)
    others = [demo.echo.enqueue(i=i) for i in range(20)]
    worker = start_worker("--concurrency", "1", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    failed = job(poison.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error["type"] == "jobqueue.exceptions.UnstorableResult"
    assert failed.result is None
    assert all(job(r.id).status == JobStatus.SUCCEEDED for r in others)
    assert "Traceback" not in worker.output()


@pytest.mark.parametrize("kind", ["nul", "surrogate"])
def test_an_error_message_the_database_cannot_store_is_stored_cleaned(start_worker, kind):
    poison = tasks.raises_poison.enqueue(kind=kind)
    after = demo.echo.enqueue()
    worker = start_worker("--concurrency", "1", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    failed = job(poison.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error["type"] == "builtins.ValueError"
    assert failed.error["message"].startswith("bad ")
    assert job(after.id).status == JobStatus.SUCCEEDED


def test_a_timeout_inside_a_query_leaves_the_child_clean(start_worker):
    """JobTimeout raised while psycopg waited for pg_sleep left the child's connection
    mid-query: the next job on that child failed, and the query ran on."""
    stuck = tasks.sleep_in_query.enqueue(seconds=30)
    after = tasks.query.enqueue()
    worker = start_worker("--concurrency", "1", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    timed_out = job(stuck.id)
    assert timed_out.status == JobStatus.FAILED
    assert timed_out.error["type"] == "jobqueue.exceptions.JobTimeout"
    assert job(after.id).status == JobStatus.SUCCEEDED, job(after.id).errors
    assert job(after.id).result == 42
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%'")
        assert cursor.fetchone()[0] == 0, "the timed-out query still runs on the server"
