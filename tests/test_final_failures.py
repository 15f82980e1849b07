"""Errors no retry can fix fail the job at once, whatever attempts remain.

A return value that cannot be stored would be computed again at every attempt,
at full cost, only to be refused again: the job fails on its first attempt with
the UnstorableResult that says why, whether the child found the value
unstorable or the database refused the outcome. Real runworker processes, a
real PostgreSQL.
"""

from collections.abc import Iterator

import pytest
from django.db import connection

from jobqueue.models import Job, JobStatus
from tests import tasks
from tests.conftest import wait_until

UNSTORABLE = "jobqueue.exceptions.UnstorableResult"


def job(pk: int | str) -> Job:
    return Job.objects.get(pk=int(pk))


def assert_failed_once_for_good(pk: int | str, execution_log) -> Job:
    failed = job(pk)
    assert failed.status == JobStatus.FAILED
    assert failed.max_attempts == 3
    assert failed.attempts == 1, "an unstorable result was retried"
    assert [run["outcome"] for run in failed.runs] == ["failed"]
    assert [row[2] for row in execution_log()] == ["attempt 1"]
    [error] = failed.errors
    assert error["type"] == UNSTORABLE
    assert error["attempt"] == 1
    return failed


def test_an_unstorable_return_value_fails_the_job_at_once(start_worker, execution_log):
    result = tasks.record_then_return_nan.enqueue()
    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).status == JobStatus.FAILED, 60, "the job failed")
    failed = assert_failed_once_for_good(result.id, execution_log)
    assert failed.errors[0]["message"] == (
        "the task's return value cannot be stored: NaN at result"
    )


# A test-only trigger: the database refuses to store one particular result, as it would
# a value the worker's own checks (jobqueue.worker.storable) do not know it refuses.
REFUSE = """
CREATE FUNCTION test_refuse_result() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.result = '"the database refuses this"'::jsonb THEN
        RAISE EXCEPTION 'test_refuse_result: this result is refused' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_result BEFORE UPDATE ON jobqueue_job FOR EACH ROW
EXECUTE FUNCTION test_refuse_result();
"""
DROP_REFUSE = """
DROP TRIGGER IF EXISTS test_refuse_result ON jobqueue_job;
DROP FUNCTION IF EXISTS test_refuse_result();
"""


@pytest.fixture
def refused_result(transactional_db: None) -> Iterator[str]:
    """A result the database refuses to store (a trigger raises a data exception)."""
    with connection.cursor() as cursor:
        cursor.execute(DROP_REFUSE)
        cursor.execute(REFUSE)
    yield "the database refuses this"
    with connection.cursor() as cursor:
        cursor.execute(DROP_REFUSE)


def test_a_result_the_database_refuses_fails_the_job_at_once(
    start_worker, execution_log, refused_result
):
    result = tasks.record_then_return.enqueue(value=refused_result)
    start_worker("--concurrency", "1")
    wait_until(lambda: job(result.id).status == JobStatus.FAILED, 60, "the job failed")
    failed = assert_failed_once_for_good(result.id, execution_log)
    message = failed.errors[0]["message"]
    assert message.startswith("the database refused this attempt's outcome: ")
    assert "test_refuse_result: this result is refused" in message
    assert failed.result is None
