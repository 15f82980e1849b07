"""A job's bad outcome fails that job, never the worker or the next job in its child.

End to end with real runworker processes. Before the executor called
jobqueue.worker.storable and jobqueue.worker.hygiene, a NaN result failed the
supervisor's batched ack and the worker exited 1, and a job interrupted in a
query left its child's connection busy, so the next job there failed with
"another command is already in progress".
"""

import psycopg
import pytest

from jobqueue.models import Job, JobStatus
from tests import tasks
from tests.conftest import database_url

pytestmark = pytest.mark.slow


def job(pk: int | str) -> Job:
    return Job.objects.get(pk=int(pk))


def test_unstorable_results_and_errors_fail_only_their_own_job(start_worker):
    poison = [tasks.returns_unstorable.enqueue(kind=k) for k in ("nan", "nul", "surrogate")]
    raiser = tasks.raises_unstorable_text.enqueue()
    after = tasks.backend_pid.enqueue()
    worker = start_worker("--concurrency", "1", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    wheres = ["NaN at result['mean']", "result['t']", "result[0]"]
    for result, where in zip(poison, wheres, strict=True):
        assert job(result.id).status == JobStatus.FAILED
        assert job(result.id).error["type"] == "jobqueue.exceptions.UnstorableResult"
        assert where in job(result.id).error["message"]
    message = job(raiser.id).error["message"]
    assert message.startswith("bad \\x00 and \\udce9 xxx")
    assert message.endswith(" more characters]")
    assert job(after.id).status == JobStatus.SUCCEEDED


def cancel_sleepers() -> int:
    """Cancel the test's queries still running, so no later test meets them; how many."""
    with psycopg.connect(database_url(), autocommit=True) as conn:
        return conn.execute(
            "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity "
            "WHERE query = 'SELECT pg_sleep(10)' AND state = 'active'"
        ).fetchone()[0]


def test_a_job_timed_out_in_a_query_leaves_the_next_job_a_clean_connection(start_worker):
    slow = [tasks.slow_query.enqueue(atomic=False), tasks.slow_query.enqueue(atomic=True)]
    after = [tasks.backend_pid.enqueue() for _ in range(2)]
    worker = start_worker("--concurrency", "1", "--burst")
    try:
        assert worker.wait(timeout=60) == 0, worker.output()
        for result in slow:
            assert job(result.id).error["type"] == "jobqueue.exceptions.JobTimeout"
        for result in after:
            assert job(result.id).status == JobStatus.SUCCEEDED, job(result.id).error
    finally:
        running = cancel_sleepers()
    assert running == 0, "the timed-out queries still ran on the server"
