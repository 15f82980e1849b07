"""The django.tasks backend against the real database: enqueue, bulk enqueue, get_result."""

from datetime import timedelta

import psycopg
import pytest
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils import timezone

import demo
from jobqueue import backend
from jobqueue.models import Job, JobStatus
from tests import tasks
from tests.conftest import database_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_returns_a_ready_result_backed_by_a_row():
    result = demo.echo.enqueue(a=1)
    assert result.status == TaskResultStatus.READY
    job = Job.objects.get(pk=result.id)
    assert (job.task, job.queue, job.status, job.kwargs) == (
        "demo.echo",
        "default",
        "queued",
        {"a": 1},
    )
    assert job.max_attempts == 1  # from @task(max_attempts=1)


def test_using_sets_queue_priority_delay_and_jobqueue_options():
    later = timezone.now() + timedelta(minutes=5)
    result = demo.sleep.using(
        queue_name="reports", priority=10, run_after=later, max_attempts=5, timeout=60
    ).enqueue(seconds=1)
    job = Job.objects.get(pk=result.id)
    assert (job.queue, job.priority, job.scheduled_at, job.max_attempts, job.timeout_seconds) == (
        "reports",
        10,
        later,
        5,
        60,
    )


def test_defaults_come_from_jobqueue_settings(settings):
    settings.JOBQUEUE = {**settings.JOBQUEUE, "DEFAULT_MAX_ATTEMPTS": 7, "DEFAULT_TIMEOUT": 42}
    job = Job.objects.get(pk=tasks.note_order.enqueue(label="x").id)
    assert job.max_attempts == 1  # the task's own option wins
    job = Job.objects.get(pk=tasks.ignore_cancel.using(max_attempts=None).enqueue().id)
    assert job.timeout_seconds == 42


def test_enqueue_inside_a_rolled_back_transaction_leaves_no_job():
    with pytest.raises(RuntimeError), transaction.atomic():
        demo.echo.enqueue(a=1)
        raise RuntimeError("the caller's work failed")
    assert not Job.objects.exists()


def test_enqueue_inside_a_committed_transaction_commits_with_it():
    with transaction.atomic():
        result = demo.echo.enqueue(a=1)
    assert Job.objects.filter(pk=result.id).exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"queue_name": "no spaces allowed"}, "queue name"),
        ({"priority": 101}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": -1}, "timeout"),
        ({"run_after": timezone.now().replace(tzinfo=None)}, "aware"),
    ],
)
def test_invalid_options_are_refused_before_anything_is_stored(change, message):
    with pytest.raises(InvalidTask, match=message):
        demo.echo.using(**change).enqueue()
    assert not Job.objects.exists()


def test_arguments_that_are_not_json_are_refused():
    with pytest.raises(InvalidTask, match="JSON"):
        demo.echo.enqueue(when=object())
    with pytest.raises(InvalidTask, match="NUL"):  # jsonb cannot store it
        demo.echo.enqueue(text="a\x00b")
    with pytest.raises(InvalidTask, match="NUL"):
        default_task_backend.enqueue_many(demo.echo, [((), {"text": "\x00"})])
    assert not Job.objects.exists()
    assert demo.echo.enqueue(text="a literal \\u0000 is fine").kwargs["text"].endswith("fine")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("x\ud800",), {}, r"a lone surrogate ('\ud800') at index 1 of the string at args[0]"),
        (
            (),
            {"t": ["\udc00"]},
            r"a lone surrogate ('\udc00') at index 0 of the string at kwargs['t'][0]",
        ),
        (
            (),
            {"k\udfff": 1},
            r"a lone surrogate ('\udfff') at index 1 of the key 'k\udfff' of kwargs",
        ),
        ((), {"t": "a\x00b"}, r"a NUL character ('\x00') at index 1 of the string at kwargs['t']"),
    ],
)
def test_arguments_jsonb_cannot_store_are_refused_saying_where(args, kwargs, message):
    with pytest.raises(InvalidTask) as raised:
        demo.echo.enqueue(*args, **kwargs)
    assert str(raised.value) == f"task arguments cannot be stored: {message}"
    with pytest.raises(InvalidTask) as raised, transaction.atomic():
        default_task_backend.enqueue_many(demo.echo, [((), {}), (args, kwargs)])
    assert str(raised.value) == f"task arguments cannot be stored: {message}"
    assert not Job.objects.exists()


def test_surrogate_pairs_and_escaped_backslashes_in_arguments_are_stored():
    texts = ["😀", "\ud83d\ude00", "a \\ud800 is text", "\\😀", "é中"]
    result = demo.echo.enqueue(*texts, key="\\😀")
    job = Job.objects.get(pk=result.id)
    assert job.args == ["😀", "😀", "a \\ud800 is text", "\\😀", "é中"]
    assert job.kwargs == {"key": "\\😀"}


def test_nan_and_infinity_are_refused_not_left_to_jsonb():
    with pytest.raises(InvalidTask, match=r"JSON-serializable: NaN at kwargs\['x'\]"):
        demo.echo.enqueue(x=float("nan"))
    with pytest.raises(InvalidTask, match="JSON"):
        default_task_backend.enqueue_many(demo.echo, [((float("inf"),), {})])
    assert not Job.objects.exists()


def test_get_result_maps_every_status():
    result = demo.echo.enqueue()
    job = Job.objects.get(pk=result.id)
    expected = {
        JobStatus.QUEUED: TaskResultStatus.READY,
        JobStatus.RUNNING: TaskResultStatus.RUNNING,
        JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
        JobStatus.FAILED: TaskResultStatus.FAILED,
        JobStatus.CANCELLED: TaskResultStatus.FAILED,
    }
    for status, task_status in expected.items():
        Job.objects.filter(pk=job.pk).update(
            status=status, started_at=timezone.now(), finished_at=timezone.now(), result={"ok": 1}
        )
        assert demo.echo.get_result(result.id).status == task_status


def test_a_succeeded_result_has_its_return_value_and_a_cancelled_one_says_so():
    result = demo.echo.enqueue()
    Job.objects.filter(pk=result.id).update(
        status="succeeded", result={"a": 1}, started_at=timezone.now(), finished_at=timezone.now()
    )
    assert default_task_backend.get_result(result.id).return_value == {"a": 1}
    cancelled = demo.echo.enqueue()
    Job.objects.filter(pk=cancelled.id).cancel()
    fetched = default_task_backend.get_result(cancelled.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[0].exception_class_path == "jobqueue.exceptions.JobCancelled"


@pytest.mark.parametrize("bad_id", ["nope", "999999999", ""])
def test_get_result_of_an_unknown_id(bad_id):
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(bad_id)


def test_enqueue_many_copies_all_rows_in_the_callers_transaction():
    with transaction.atomic():
        results = default_task_backend.enqueue_many(demo.echo, [((), {"i": i}) for i in range(500)])
    assert len(results) == 500
    assert [r.kwargs for r in results[:2]] == [{"i": 0}, {"i": 1}]
    assert Job.objects.filter(status="queued").count() == 500
    assert Job.objects.get(pk=results[-1].id).kwargs == {"i": 499}
    with pytest.raises(RuntimeError), transaction.atomic():
        default_task_backend.enqueue_many(demo.echo, [((), {})] * 10)
        raise RuntimeError("rolled back")
    assert Job.objects.count() == 500


# JSON that COPY's text format would misread if it were not escaped, and values
# that JSON changes (a tuple, an integer key).
AWKWARD_CALLS = [
    (("tab\there", "new\nline", 'quote"', "back\\slash", "\\.", "\\N"), {"k": "\\u0000 literal"}),
    (
        (1, 2.5, None, True, (3, 4)),
        {"ü": "é€ 😀", "nested": {"a": [1, {"b": "\\t"}]}, 1: "int key"},
    ),
    ((), {}),
]


def test_enqueue_many_stores_and_returns_what_enqueue_does():
    with transaction.atomic():
        many = default_task_backend.enqueue_many(demo.echo, AWKWARD_CALLS * 1500)
    assert len(many) == len(AWKWARD_CALLS) * 1500
    singles = [default_task_backend.enqueue(demo.echo, a, k) for a, k in AWKWARD_CALLS]
    assert [(r.args, r.kwargs) for r in many[:3]] == [(r.args, r.kwargs) for r in singles]
    assert many[1].args[4] == [3, 4] and many[1].kwargs["1"] == "int key"
    assert len({r.id for r in many + singles}) == len(many) + len(singles)
    for result in (*many[:3], *many[-3:], *singles):
        job = Job.objects.get(pk=result.id)
        assert (job.args, job.kwargs) == (result.args, result.kwargs)
        assert demo.echo.get_result(result.id).kwargs == result.kwargs
        assert result.status == TaskResultStatus.READY and result.enqueued_at == job.created_at
    many[0].kwargs["k"] = "changed"
    assert many[3].kwargs["k"] == "\\u0000 literal", "results do not share argument objects"


def test_enqueue_many_stores_the_tasks_options(settings):
    settings.JOBQUEUE = {**settings.JOBQUEUE, "DEFAULT_TIMEOUT": None}
    later = timezone.now() + timedelta(minutes=5)
    task = tasks.ignore_cancel.using(
        queue_name="re:ports-1", priority=-7, run_after=later, max_attempts=4
    )
    (result,) = default_task_backend.enqueue_many(task, [((), {"seconds": 1})])
    job = Job.objects.get(pk=result.id)
    assert (job.task, job.queue, job.priority, job.scheduled_at, job.max_attempts) == (
        "tests.tasks.ignore_cancel",
        "re:ports-1",
        -7,
        later,
        4,
    )
    assert (job.timeout_seconds, job.status, job.errors, job.attempts) == (None, "queued", [], 0)


def test_a_bad_argument_in_a_bulk_stores_nothing_and_keeps_the_callers_transaction(monkeypatch):
    monkeypatch.setattr(backend, "COPY_BATCH", 10)  # the bad call comes after rows were sent
    calls = [((), {"i": i}) for i in range(25)] + [((), {"when": object()})]
    with transaction.atomic():
        kept = demo.echo.enqueue(a=1)
        with pytest.raises(InvalidTask, match="JSON"):
            default_task_backend.enqueue_many(demo.echo, calls)
        assert Job.objects.count() == 1  # the transaction still works
    with pytest.raises(InvalidTask, match="NUL"):
        default_task_backend.enqueue_many(demo.echo, [*calls[:-1], (("\x00",), {})])
    assert list(Job.objects.values_list("pk", flat=True)) == [int(kept.id)]


def test_enqueue_many_wakes_workers_once_per_queue_when_it_commits():
    with psycopg.connect(database_url(), autocommit=True) as listener:
        listener.execute("LISTEN jobqueue")
        with transaction.atomic():
            default_task_backend.enqueue_many(demo.echo, [((), {})] * 3)
            default_task_backend.enqueue_many(demo.echo.using(queue_name="b"), [((), {})] * 3)
            assert not list(listener.notifies(timeout=0.2)), "not before the commit"
        heard = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert sorted(heard) == ["b", "default"]


def test_retry_requeues_a_failed_job_with_a_fresh_budget_and_keeps_errors():
    result = demo.fail.enqueue()
    errors = [{"attempt": 1, "type": "builtins.RuntimeError", "message": "x", "traceback": ""}]
    Job.objects.filter(pk=result.id).update(
        status="failed",
        attempts=1,
        errors=errors,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    assert Job.objects.filter(pk=result.id).retry() == [int(result.id)]
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts, job.errors, job.finished_at) == ("queued", 0, errors, None)
    assert Job.objects.filter(pk=result.id).retry() == [], "a queued job cannot be retried"
