"""The django.tasks backend: enqueue writes a job row, get_result reads it back."""

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.db import connections, router
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskError, TaskResult
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from jobqueue import queries
from jobqueue.conf import get_settings
from jobqueue.models import Job, JobStatus

QUEUE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueueTask(Task):
    """A Task with jobqueue's own options: ``@task(max_attempts=5, timeout=60)``."""

    # Attempts before the job fails for good (None: JOBQUEUE["DEFAULT_MAX_ATTEMPTS"]).
    max_attempts: int | None = None
    # Seconds one attempt may run (None: JOBQUEUE["DEFAULT_TIMEOUT"]).
    timeout: float | None = None

    def using(  # type: ignore[override]
        self,
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        **changes: Any,
    ) -> "JobQueueTask":
        """Django's using(), plus max_attempts and timeout."""
        task: JobQueueTask = Task.using(self, **changes)  # type: ignore[assignment]
        return replace(
            task,
            max_attempts=task.max_attempts if max_attempts is None else max_attempts,
            timeout=task.timeout if timeout is None else timeout,
        )


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
        if not QUEUE_NAME_PATTERN.match(task.queue_name):
            raise InvalidTask(
                f"queue name {task.queue_name!r} must be 1-100 letters, digits, '_', '.', ':' "
                "or '-', starting with a letter or digit."
            )
        max_attempts = getattr(task, "max_attempts", None)
        if max_attempts is not None and not 1 <= max_attempts <= 1000:
            raise InvalidTask(f"max_attempts must be between 1 and 1000, got {max_attempts}.")
        timeout = getattr(task, "timeout", None)
        if timeout is not None and timeout <= 0:
            raise InvalidTask(f"timeout must be positive, got {timeout}.")

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> TaskResult:
        job = self.enqueue_job(task, args, kwargs)
        result = self.to_task_result(job, task)
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
        """Insert the job row in the caller's transaction; it is claimable once that commits."""
        self.validate_task(task)
        job = self._new_job(task)
        job.args, job.kwargs = json_arguments(list(args)), json_arguments(dict(kwargs))
        job.owner, job.idempotency_key = owner, idempotency_key
        row = (
            job.task, job.queue, job.priority, json.dumps(job.args), json.dumps(job.kwargs),
            job.max_attempts, job.timeout_seconds, job.created_at, job.scheduled_at,
            job.owner_id, idempotency_key,
        )  # fmt: skip
        with connections[self.database].cursor() as cursor:
            job.pk = queries.insert_job(cursor, row)
        job._state.adding, job._state.db = False, self.database
        return job

    def _new_job(self, task: Task) -> Job:
        """An unsaved queued job for ``task`` with its defaults resolved."""
        conf = get_settings()
        now = timezone.now()
        return Job(
            task=task.module_path,
            queue=task.queue_name,
            priority=task.priority,
            max_attempts=getattr(task, "max_attempts", None) or conf.DEFAULT_MAX_ATTEMPTS,
            timeout_seconds=getattr(task, "timeout", None) or conf.DEFAULT_TIMEOUT,
            created_at=now,
            scheduled_at=task.run_after or now,
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
        rows = [(json_text(list(args)), json_text(dict(kwargs))) for args, kwargs in calls]
        if not rows:
            return []
        template = self._new_job(task)
        fixed = (
            template.task, template.queue, template.priority, template.max_attempts,
            template.timeout_seconds, template.created_at, template.scheduled_at,
        )  # fmt: skip
        with connections[self.database].cursor() as cursor:
            ids = queries.allocate_job_ids(cursor, len(rows))
            queries.copy_jobs(
                cursor,
                (
                    (job_id, args, kwargs, *fixed)
                    for job_id, (args, kwargs) in zip(ids, rows, strict=True)
                ),
            )
        results = []
        for job_id, (args, kwargs) in zip(ids, rows, strict=True):
            template.pk, template.args, template.kwargs = (
                job_id,
                json.loads(args),
                json.loads(kwargs),
            )
            results.append(self.to_task_result(template, task))
        return results

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


# A \u0000 escape not itself escaped: PostgreSQL's jsonb cannot store NUL characters.
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def json_arguments(value: Any) -> Any:
    """Arguments as JSON, or an InvalidTask that says which value is not JSON."""
    return normalize_json(json.loads(json_text(value)))


def json_text(value: Any) -> str:
    """``value`` as JSON text, or an InvalidTask that says which value is not JSON."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as e:
        raise InvalidTask(f"task arguments must be JSON-serializable: {e}") from e
    if NUL_ESCAPE.search(text):
        raise InvalidTask("task arguments must not contain NUL characters (\\u0000)")
    return text


def load_task(path: str) -> Task:
    """The Task object at dotted ``path``."""
    try:
        task = import_string(path)
    except ImportError as e:
        raise InvalidTask(f"no task at {path!r}: {e}") from e
    if not isinstance(task, Task):
        raise InvalidTask(f"{path!r} is not a Task (decorate it with @task)")
    return task
