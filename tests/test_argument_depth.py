"""Arguments nested deeper than MAX_ARGUMENT_DEPTH are refused at enqueue; at the limit they run.

A child copies a job's arguments with recursive code (Django's TaskResult,
the task itself); thousands of levels ended it with a RecursionError after the
job had been stored. So every way in refuses them before anything is stored:
``task.enqueue()``, ``enqueue_many`` (plain and unique) and the API (its tests
are in tests/api/test_bad_input.py). Real PostgreSQL, a real worker.
"""

import pytest
from django.tasks import default_task_backend
from django.tasks.exceptions import InvalidTask

import demo
from jobqueue.backend import MAX_ARGUMENT_DEPTH
from jobqueue.models import Job, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)


def nested(depth: int) -> list:
    """Lists ``depth`` levels deep: ``nested(2) == [[]]``."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_the_limit_is_well_below_pythons_recursion_limit():
    assert MAX_ARGUMENT_DEPTH == 100


@pytest.mark.parametrize("depth", [MAX_ARGUMENT_DEPTH + 1, 3000, 20_000])
def test_enqueue_refuses_arguments_nested_over_the_limit_and_stores_nothing(depth):
    message = (
        rf"task arguments cannot be stored: kwargs\['tree'\] nests lists and objects more "
        rf"than {MAX_ARGUMENT_DEPTH} levels deep"
    )
    with pytest.raises(InvalidTask, match=message):
        demo.echo.enqueue(tree=nested(depth))
    with pytest.raises(InvalidTask, match=r"args\[1\] nests lists and objects more than 100"):
        default_task_backend.enqueue_many(demo.echo, [((), {}), ((1, nested(depth)), {})])
    with pytest.raises(InvalidTask, match=message):
        default_task_backend.enqueue_many(
            demo.echo.using(unique=True), [((), {"tree": nested(depth)})]
        )
    assert Job.objects.count() == 0


def test_objects_count_as_levels_too():
    tree: dict = {}
    for _ in range(MAX_ARGUMENT_DEPTH):
        tree = {"child": tree}
    with pytest.raises(InvalidTask, match="more than 100 levels deep"):
        demo.echo.enqueue(tree=tree)
    assert Job.objects.count() == 0


def test_wide_arguments_within_the_limit_are_accepted():
    """Many brackets, little depth: counted by nesting, not by size."""
    wide = [{"i": i, "tags": [[i]]} for i in range(5000)]
    result = demo.echo.enqueue(rows=wide, text="[[[[" * 100)
    assert Job.objects.get(pk=result.id).kwargs["rows"] == wide


def test_arguments_at_the_limit_are_accepted_and_run(start_worker):
    at_limit = nested(MAX_ARGUMENT_DEPTH)
    result = demo.echo.enqueue(tree=at_limit)
    [many] = default_task_backend.enqueue_many(demo.echo, [((), {"tree": at_limit})])
    worker = start_worker("--concurrency", "1", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    for pk in (result.id, many.id):
        done = Job.objects.get(pk=pk)
        assert done.status == JobStatus.SUCCEEDED, done.errors
        assert done.result == {"tree": at_limit}
