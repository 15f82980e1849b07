"""A child that dies of a Python exception says which: the job's error names it.

Before, such a job recorded only ``ChildCrashed: the child process exited with
code 1``, and the exception was only in the worker's log. Real runworker
processes, a real PostgreSQL.
"""

import demo
from jobqueue.models import Job, JobStatus
from tests import tasks
from tests.test_argument_depth import nested


def job(pk: int | str) -> Job:
    return Job.objects.get(pk=int(pk))


def test_arguments_the_child_cannot_copy_fail_the_job_with_the_exception(start_worker):
    """A row stored before enqueue refused deep arguments (MAX_ARGUMENT_DEPTH): the child's
    copy of them raises RecursionError, which fails the attempt and spares the child."""
    deep = demo.echo.enqueue(tree=[])
    Job.objects.filter(pk=deep.id).update(kwargs={"tree": nested(3000)})
    after = demo.echo.enqueue(i=1)
    worker = start_worker("--concurrency", "1", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    failed = job(deep.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error["type"] == "builtins.RecursionError"
    assert "maximum recursion depth exceeded" in failed.error["message"]
    assert failed.error["traceback"].startswith("Traceback (most recent call last):")
    assert job(after.id).status == JobStatus.SUCCEEDED


def test_a_child_that_dies_of_an_exception_reports_it(start_worker):
    result = tasks.interrupts.enqueue(message="stop right there")
    after = demo.echo.enqueue(i=1)
    worker = start_worker("--concurrency", "1", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    crashed = job(result.id)
    assert crashed.status == JobStatus.FAILED
    assert crashed.error["type"] == "jobqueue.exceptions.ChildCrashed"
    assert crashed.error["message"] == (
        "the child process exited with code 1, of builtins.KeyboardInterrupt: stop right there"
    )
    assert "raise KeyboardInterrupt(message)" in crashed.error["traceback"]
    assert job(after.id).status == JobStatus.SUCCEEDED
