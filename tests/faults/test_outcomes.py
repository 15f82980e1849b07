"""Cancel wins: once a running job's cancel is requested, it ends cancelled whatever path
its attempt ends by. Real worker processes against the real database."""

import signal

import pytest

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
