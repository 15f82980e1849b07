"""The django.tasks backend: enqueue writes a job row, get_result reads it back."""

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

from django.db import connections, router, transaction
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskError, TaskResult, TaskResultStatus
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils.module_loading import import_string

from jobqueue import events, keys, queries, queue_names
from jobqueue.db import prepared_cursor
from jobqueue.job_fields import SharedFields, shared_fields
from jobqueue.jsonb import deeper_than, first_problem, may_be_refused
from jobqueue.models import Job, JobStatus
from jobqueue.scheduling.unique import DEFAULT_STATES, check_options, uniqueness

# The ways a worker can run a job (jobqueue/worker/execution.py).
EXECUTIONS = ("process", "thread", "async")
# Jobs per COPY batch of enqueue_many (about 100 kB of COPY text for small arguments).
COPY_BATCH = 1000
# The deepest that lists and objects may nest within one argument (``[[1]]`` is two
# levels). A child copies a job's arguments with recursive code (Django's TaskResult,
# the task's own), which thousands of levels end with a RecursionError, killing the
# child; real payloads never come near this, and it is far below Python's recursion
# limit (1000 frames) and jsonb's own (the server's max_stack_depth).
MAX_ARGUMENT_DEPTH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueueTask(Task):
    """A Task with jobqueue's own options: ``@task(max_attempts=5, timeout=60, unique=True)``."""

    # Attempts before the job fails for good (None: JOBQUEUE["DEFAULT_MAX_ATTEMPTS"]).
    max_attempts: int | None = None
    # Seconds one attempt may run (None: JOBQUEUE["DEFAULT_TIMEOUT"]).
    timeout: float | None = None
    # How a worker runs it: "process", "thread" or "async" (None: its queue's mode in
    # JOBQUEUE["QUEUE_EXECUTION"], else "process"); see jobqueue/worker/execution.py.
    execution: str | None = None
    # Unique jobs (jobqueue/scheduling/unique.py): an explicit key (scoped to the task), or
    # unique=True for a key derived from the task and its arguments. While a job with
    # the key is in one of unique_states, enqueuing another returns that job instead.
    unique_key: str | None = None
    unique: bool = False
    # Seconds: the key holds within windows of this length only (None: for ever).
    unique_for: float | None = None
    unique_states: tuple[str, ...] = DEFAULT_STATES
    # Concurrency keys (jobqueue/keys.py): at most concurrency_limit running jobs per key,
    # the key made from each job's arguments ("customer:{customer_id}", or a callable).
    concurrency_key: str | Callable[..., Any] | None = None
    concurrency_limit: int = 1

    def using(  # type: ignore[override]
        self,
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        unique: bool | None = None,
        unique_for: float | None = None,
        unique_states: Sequence[str] | None = None,
        execution: str | None = None,
        concurrency_key: str | Callable[..., Any] | None = None,
        concurrency_limit: int | None = None,
        **changes: Any,
    ) -> "JobQueueTask":
        """Django's using(), plus jobqueue's options; None leaves an option as it is."""
        task: JobQueueTask = Task.using(self, **changes)  # type: ignore[assignment]
        own: dict[str, Any] = {
            "max_attempts": max_attempts,
            "timeout": timeout,
            "unique_key": unique_key,
            "unique": unique,
            "unique_for": unique_for,
            "unique_states": None if unique_states is None else tuple(unique_states),
            "execution": execution,
            "concurrency_key": concurrency_key,
            "concurrency_limit": concurrency_limit,
        }
        return replace(task, **{name: value for name, value in own.items() if value is not None})


class JobQueueBackend(BaseTaskBackend):
    """Stores every enqueued task as a row in PostgreSQL for runworker to execute."""

    task_class = JobQueueTask

    # run_after becomes the job's scheduled_at; workers claim it once it has passed.
    supports_defer = True
    # Coroutine tasks run to completion in the worker's child process.
    supports_async_task = True
    # Results live in the job row and can be read from any process.
    supports_get_result = True
    # Workers claim higher priorities first.
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database = self.options.get("DATABASE", router.db_for_write(Job))

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if not queue_names.is_queue_name(task.queue_name):
            raise InvalidTask(f"queue name {task.queue_name!r} must be {queue_names.RULE}.")
        max_attempts = getattr(task, "max_attempts", None)
        if max_attempts is not None and not 1 <= max_attempts <= 1000:
            raise InvalidTask(f"max_attempts must be between 1 and 1000, got {max_attempts}.")
        timeout = getattr(task, "timeout", None)
        if timeout is not None and timeout <= 0:
            raise InvalidTask(f"timeout must be positive, got {timeout}.")
        execution = getattr(task, "execution", None)
        if execution is not None and execution not in EXECUTIONS:
            raise InvalidTask(
                f"execution must be one of {', '.join(EXECUTIONS)}, got {execution!r}."
            )
        check_options(task)
        keys.check_options(task)

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> TaskResult:
        """Enqueue one job; for a unique task whose key is live, the live job's TaskResult."""
        job_id, shared, args_json, kwargs_json, duplicate = self._insert(task, args, kwargs)
        if duplicate:
            return self.get_result(str(job_id))
        result = self._queued_result(
            task, job_id, shared, json.loads(args_json), json.loads(kwargs_json)
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue_job(
        self,
        task: Task,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        owner: Any = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Insert the job row in the caller's transaction; it is claimable once that commits.

        For a unique task whose key is live, the live job, read back, with ``duplicate`` set.
        """
        job_id, shared, args_json, kwargs_json, duplicate = self._insert(
            task, args, kwargs, owner=owner, idempotency_key=idempotency_key
        )
        if duplicate:
            live = Job.objects.using(self.database).get(pk=job_id)
            live.duplicate = True
            return live
        job = Job(
            pk=job_id,
            **shared._asdict(),
            args=json.loads(args_json),
            kwargs=json.loads(kwargs_json),
            owner=owner,
            idempotency_key=idempotency_key,
        )
        job._state.adding, job._state.db = False, self.database
        return job

    def _insert(
        self,
        task: Task,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        owner: Any = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, SharedFields, str, str, bool]:
        """INSERT one queued job in the caller's transaction; returns its id, what it stored,
        and whether the id is instead that of a live job holding the task's unique key."""
        self.validate_task(task)
        shared = shared_fields(task)
        args_json, kwargs_json = json_text(list(args), "args"), json_text(dict(kwargs), "kwargs")
        row = (
            *shared,
            args_json,
            kwargs_json,
            None if owner is None else owner.pk,
            idempotency_key,
        )
        stored_args, stored_kwargs = json.loads(args_json), json.loads(kwargs_json)
        unique = uniqueness(task, stored_args, stored_kwargs, shared.created_at)
        key = keys.concurrency_key(task, stored_args, stored_kwargs)
        # A keyed job gets its key in the insert's transaction: no worker sees it without.
        with (
            transaction.atomic(using=self.database) if key else nullcontext(),
            prepared_cursor(self.database) as cursor,
        ):
            if unique is None:
                job_id, duplicate = queries.insert_job(cursor, row), False
            else:
                job_id, duplicate = queries.insert_unique_job(
                    cursor, row, unique.key, unique.states
                )
            if key and not duplicate:
                limit = getattr(task, "concurrency_limit", 1)
                queries.set_concurrency_keys(cursor, {job_id: key}, limit)
        if not duplicate:
            events.enqueued(self.database, shared.task, shared.queue, shared.scheduled_at, [job_id])
        return job_id, shared, args_json, kwargs_json, duplicate

    def _queued_result(
        self, task: Task, job_id: int, shared: SharedFields, args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult:
        """The TaskResult of a job just enqueued: what to_task_result() would read from its row.

        ``args`` and ``kwargs`` are as read back from the stored JSON; TaskResult
        copies them (normalize_json), so results may be given the same objects.
        """
        return TaskResult(
            task=task,
            id=str(job_id),
            status=TaskResultStatus.READY,
            enqueued_at=shared.created_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

    def enqueue_many(
        self, task: Task, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]]
    ) -> list[TaskResult]:
        """Enqueue ``task`` once per ``(args, kwargs)`` with one COPY: the bulk call.

        Ids are drawn from the sequence first so that results can be returned;
        like enqueue(), it joins the caller's transaction, and workers are woken
        once per queue when it commits.
        """
        self.validate_task(task)
        calls = list(calls)
        if not calls:
            return []
        shared = shared_fields(task)
        if uniqueness(task, [], {}, shared.created_at) is not None:
            return self._enqueue_many_unique(task, calls, shared)
        results: list[TaskResult] = []
        parsed: dict[str, Any] = {}  # JSON text -> value: calls often share arguments, e.g. none

        def loads(text: str) -> Any:
            if text not in parsed:
                parsed[text] = json.loads(text)
            return parsed[text]

        def batches(ids: list[int]) -> Iterator[list[tuple[int, str, str]]]:
            # COPY sends each batch as it is yielded; the results of that batch are
            # built while the server stores it (the machine's other core).
            for start in range(0, len(calls), COPY_BATCH):
                batch = [
                    (job_id, json_text(list(args), "args"), json_text(dict(kwargs), "kwargs"))
                    for job_id, (args, kwargs) in zip(
                        ids[start : start + COPY_BATCH],
                        calls[start : start + COPY_BATCH],
                        strict=True,
                    )
                ]
                yield batch
                results.extend(
                    self._queued_result(task, job_id, shared, loads(args), loads(kwargs))
                    for job_id, args, kwargs in batch
                )

        # Arguments are turned into JSON as the COPY goes: one that is not JSON
        # aborts it, and the savepoint keeps the caller's transaction usable.
        with transaction.atomic(using=self.database), prepared_cursor(self.database) as cursor:
            queries.copy_jobs(cursor, shared, batches(queries.allocate_job_ids(cursor, len(calls))))
            if getattr(task, "concurrency_key", None) is not None:
                self._set_keys(cursor, task, {int(r.id): (r.args, r.kwargs) for r in results})
        ids = (int(r.id) for r in results)  # read only if the events are logged
        events.enqueued(self.database, shared.task, shared.queue, shared.scheduled_at, ids)
        return results

    def _enqueue_many_unique(
        self, task: Task, calls: list[tuple[Sequence[Any], dict[str, Any]]], shared: SharedFields
    ) -> list[TaskResult]:
        """enqueue_many() for a unique task: COPY into a staging table, then an insert that
        skips live keys (queries.move_staged_unique). A call whose key is live, or taken by
        an earlier call of the same batch, gets that job's TaskResult."""
        rows = []
        for args, kwargs in calls:
            args_json, kwargs_json = (
                json_text(list(args), "args"),
                json_text(dict(kwargs), "kwargs"),
            )
            parsed = (json.loads(args_json), json.loads(kwargs_json))
            unique = uniqueness(task, *parsed, shared.created_at)
            assert unique is not None  # the task is unique, whatever its arguments
            rows.append((args_json, kwargs_json, unique.key, parsed))
        with transaction.atomic(using=self.database), prepared_cursor(self.database) as cursor:
            ids = queries.allocate_job_ids(cursor, len(rows))
            queries.stage_unique_jobs(
                cursor,
                shared,
                getattr(task, "unique_states", DEFAULT_STATES),
                [(i, a, k, key) for i, (a, k, key, _) in zip(ids, rows, strict=True)],
            )
            holders = queries.move_staged_unique(
                cursor, {i: key for i, (_, _, key, _) in zip(ids, rows, strict=True)}
            )
            inserted = {i for i in ids if holders[i] == i}
            if getattr(task, "concurrency_key", None) is not None:
                by_id = {i: parsed for i, (*_, parsed) in zip(ids, rows, strict=True)}
                self._set_keys(cursor, task, {i: by_id[i] for i in inserted})
            live = Job.objects.using(self.database).in_bulk(set(holders.values()) - inserted)
        events.enqueued(
            self.database, shared.task, shared.queue, shared.scheduled_at, sorted(inserted)
        )
        results = {
            i: self._queued_result(task, i, shared, *parsed)
            for i, (*_, parsed) in zip(ids, rows, strict=True)
            if i in inserted
        }
        results.update((i, self.to_task_result(job, task)) for i, job in live.items())
        return [results[holders[i]] for i in ids]

    def _set_keys(self, cursor: Any, task: Task, arguments: dict[int, tuple[Any, Any]]) -> None:
        """Give jobs just inserted in this transaction their concurrency keys (jobqueue/keys.py)."""
        job_keys = {i: keys.concurrency_key(task, *a) for i, a in arguments.items()}
        limit = getattr(task, "concurrency_limit", 1)
        queries.set_concurrency_keys(cursor, {i: k for i, k in job_keys.items() if k}, limit)

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job = Job.objects.using(self.database).get(pk=int(result_id))
        except (ValueError, TypeError, Job.DoesNotExist) as e:
            raise TaskResultDoesNotExist(result_id) from e
        return self.to_task_result(job)

    def to_task_result(self, job: Job, task: Task | None = None) -> TaskResult:
        """The Django view of a job row."""
        if task is None:
            task = load_task(job.task)
        result: TaskResult = TaskResult(
            task=task,
            id=str(job.pk),
            status=JobStatus(job.status).as_task_status(),
            enqueued_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            last_attempted_at=job.started_at,
            args=job.args,
            kwargs=job.kwargs,
            backend=self.alias,
            errors=[
                TaskError(exception_class_path=e["type"], traceback=e.get("traceback", ""))
                for e in job.errors
            ],
            worker_ids=[str(job.worker_id or "")] * job.attempts,
        )
        if job.status == JobStatus.SUCCEEDED:
            object.__setattr__(result, "_return_value", job.result)
        return result

    def check(self, **kwargs: Any) -> list[Any]:
        from django.core.checks import Error

        if connections[self.database].vendor != "postgresql":
            return [
                Error(
                    "jobqueue needs PostgreSQL (FOR UPDATE SKIP LOCKED, LISTEN/NOTIFY).",
                    obj=self.alias,
                    id="jobqueue.E001",
                )
            ]
        return []


# JSON as json.dumps() writes it, except that NaN and infinities, which jsonb refuses, are errors.
_encode_json = json.JSONEncoder(allow_nan=False).encode


def json_text(value: Any, name: str) -> str:
    """``value`` as JSON text jsonb accepts, or an InvalidTask that says what is wrong and where.

    ``name`` ("args" or "kwargs") starts the place named in the message, as in
    ``kwargs['text']``. Refused: values that are not JSON, NaN and infinities,
    and strings with a NUL character or a lone surrogate, which jsonb cannot
    store (and which would otherwise fail the INSERT with a database error),
    and arguments nested more than MAX_ARGUMENT_DEPTH levels deep. Text with no
    more brackets than that costs two counts; only other text is walked.
    """
    try:
        text = _encode_json(value)
    except RecursionError as e:
        raise _too_deep(_deep_argument(value, name) or name) from e
    except (TypeError, ValueError) as e:
        where = first_problem(value, name) or e
        raise InvalidTask(f"task arguments must be JSON-serializable: {where}") from e
    if may_be_refused(text) and (problem := first_problem(value, name)):
        raise InvalidTask(f"task arguments cannot be stored: {problem}")
    # The brackets bound the depth: the list or object of all the arguments is one of them.
    if text.count("[") + text.count("{") > MAX_ARGUMENT_DEPTH + 1 and (
        deep := _deep_argument(value, name)
    ):
        raise _too_deep(deep)
    return text


def _deep_argument(value: Any, name: str) -> str | None:
    """The first argument in ``value`` (the args list, or the kwargs) nested too deep, as
    ``args[1]`` or ``kwargs['tree']``; None if none is."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if deeper_than(item, MAX_ARGUMENT_DEPTH):
            return f"{name}[{key!r}]"
    return None


def _too_deep(where: str) -> InvalidTask:
    return InvalidTask(
        f"task arguments cannot be stored: {where} nests lists and objects more than "
        f"{MAX_ARGUMENT_DEPTH} levels deep, the limit (jobqueue.backend.MAX_ARGUMENT_DEPTH)"
    )


def load_task(path: str) -> Task:
    """The Task object at dotted ``path``."""
    try:
        task = import_string(path)
    except ImportError as e:
        raise InvalidTask(f"no task at {path!r}: {e}") from e
    if not isinstance(task, Task):
        raise InvalidTask(f"{path!r} is not a Task (decorate it with @task)")
    return task
