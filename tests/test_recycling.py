"""Child recycling on real workers: a child is replaced after ``--max-jobs-per-child`` jobs,
or between jobs once its memory passes ``--max-child-memory``; no job is interrupted or
charged for it."""

from collections import Counter

import pytest

from jobqueue.models import Job, JobStatus
from tests import tasks


def results(enqueued) -> list[Job]:
    return list(Job.objects.filter(pk__in=[int(r.id) for r in enqueued]).order_by("pk"))


@pytest.mark.parametrize(
    ("task", "options"),
    [("child_pid", ()), ("async_child_pid", ("--async-slots", "20"))],
    ids=["process", "async"],
)
def test_a_child_is_replaced_after_it_was_sent_max_jobs_per_child(start_worker, task, options):
    enqueued = [getattr(tasks, task).enqueue() for _ in range(10)]
    worker = start_worker("--concurrency", "1", "--max-jobs-per-child", "3", *options, "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    rows = results(enqueued)
    assert {(j.status, j.attempts, j.errors == []) for j in rows} == {
        (JobStatus.SUCCEEDED, 1, True)
    }
    per_child = Counter(j.result for j in rows)
    assert sorted(per_child.values(), reverse=True) == [3, 3, 3, 1], per_child
    assert "(--max-jobs-per-child)" in worker.output()


def test_a_child_past_max_child_memory_is_replaced_between_jobs(start_worker):
    leak = tasks.leak.enqueue(mb=200)
    after = [tasks.child_pid.enqueue() for _ in range(3)]
    worker = start_worker("--concurrency", "1", "--max-child-memory", "150", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    leaked, *rest = results([leak, *after])
    assert {(j.status, j.attempts) for j in [leaked, *rest]} == {(JobStatus.SUCCEEDED, 1)}
    assert leaked.result not in {j.result for j in rest}, "the leaking child ran on"
    assert len({j.result for j in rest}) == 1, "a child under the limit is kept"
    assert "(--max-child-memory)" in worker.output()
