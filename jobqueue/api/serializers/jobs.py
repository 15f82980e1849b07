"""A job's JSON: as clients read it, and a submission as clients send it."""

import math
from datetime import timedelta
from typing import Any, cast

from django.tasks import Task
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from jobqueue.api.tasks import ArgumentError, ExposedTask, exposed_tasks, get_exposed
from jobqueue.backend import JobQueueTask
from jobqueue.models import Job, JobStatus
from jobqueue.queue_names import RULE, is_queue_name

MAX_ATTEMPTS = 1000
# Longest delay a submission may ask for, and longest timeout it may set.
MAX_DELAY_SECONDS = 366 * 24 * 3600
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


# Decimals of progress.percent in the API: enough for a progress bar, none of float's noise.
PERCENT_DECIMALS = 2


class ProgressSerializer(serializers.Serializer):
    """How far the running task says it is."""

    percent = serializers.FloatField(
        allow_null=True,
        min_value=0,
        max_value=100,
        source="progress_percent",
        help_text=f"0-100, rounded to {PERCENT_DECIMALS} decimals; null until the task reports.",
    )
    message = serializers.CharField(source="progress_message", allow_blank=True)
    updated_at = serializers.DateTimeField(allow_null=True, source="progress_updated_at")


class JobErrorSerializer(serializers.Serializer):
    """One failed attempt; ``traceback`` is shown to staff only."""

    attempt = serializers.IntegerField(min_value=0, help_text="The attempt that failed.")
    type = serializers.CharField(allow_blank=True, help_text="Dotted path of the exception class.")
    message = serializers.CharField(allow_blank=True)
    traceback = serializers.CharField(
        required=False, allow_blank=True, help_text="Staff only; empty for kills and rescues."
    )
    at = serializers.DateTimeField(help_text="When the attempt failed.")
    worker = serializers.CharField(
        allow_null=True,
        help_text="The worker that ran the attempt (host:pid); null when none did or it was "
        "not recorded (a job cancelled before it ran, one rescued from a lost worker).",
    )


class JobSerializer(serializers.ModelSerializer):
    """A job as clients see it.

    ``position_in_queue`` is the number of ready jobs of the same queue ahead
    of it in claim order; ``estimated_wait_seconds`` is that number times the
    mean run time of the queue's last 100 jobs finished within the hour,
    divided by the concurrency of the live workers serving the queue (at
    least the time until it is due).
    Both are null unless the job is queued, and the estimate is null while no
    live worker serves the queue or no job of the queue finished lately.
    """

    id = serializers.IntegerField(read_only=True, min_value=1)
    priority = serializers.IntegerField(
        read_only=True, min_value=TASK_MIN_PRIORITY, max_value=TASK_MAX_PRIORITY
    )
    args = serializers.ListField(
        child=serializers.JSONField(), read_only=True, help_text="Positional arguments."
    )
    kwargs = serializers.DictField(
        child=serializers.JSONField(), read_only=True, help_text="Keyword arguments."
    )
    result = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="The task's JSON return value once it succeeded; null before.",
    )
    attempts = serializers.IntegerField(
        read_only=True, min_value=0, help_text="Attempts started in the current retry budget."
    )
    max_attempts = serializers.IntegerField(read_only=True, min_value=1, max_value=MAX_ATTEMPTS)
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    errors = serializers.SerializerMethodField()
    elapsed_seconds = serializers.FloatField(read_only=True, allow_null=True, min_value=0)
    position_in_queue = serializers.SerializerMethodField()
    estimated_wait_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "task",
            "queue",
            "priority",
            "status",
            "progress",
            "args",
            "kwargs",
            "result",
            "error",
            "errors",
            "attempts",
            "max_attempts",
            "cancel_requested",
            "created_at",
            "scheduled_at",
            "started_at",
            "finished_at",
            "elapsed_seconds",
            "position_in_queue",
            "estimated_wait_seconds",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Job) -> dict[str, Any]:
        """The job's JSON, built directly (``job_data``); the fields above describe it.

        A ModelSerializer builds its fields again for every instance it
        serializes, which cost more than the rest of a job poll together.
        """
        return job_data(instance, self._position(instance), show_traceback=self._show_traceback())

    # The computed fields, one at a time (the schema reads their types here);
    # to_representation() fills them all at once through job_data().

    def _show_traceback(self) -> bool:
        request = self.context.get("request")
        return request is not None and request.user.is_staff

    def _position(self, job: Job) -> tuple | None:
        return self.context.get("positions", {}).get(job.pk)

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, job: Job) -> dict[str, Any]:
        return _progress(job)

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: Job) -> dict[str, Any] | None:
        """The error that ended the job, or the last attempt's while it waits to retry."""
        return _error(job, self._show_traceback())

    @extend_schema_field(JobErrorSerializer(many=True))
    def get_errors(self, job: Job) -> list[dict[str, Any]]:
        return [_shown(e, self._show_traceback()) for e in job.errors]

    @extend_schema_field(serializers.IntegerField(allow_null=True, min_value=0))
    def get_position_in_queue(self, job: Job) -> int | None:
        position = self._position(job)
        return None if position is None else position[0]

    @extend_schema_field(serializers.FloatField(allow_null=True, min_value=0))
    def get_estimated_wait_seconds(self, job: Job) -> float | None:
        position = self._position(job)
        return None if position is None else estimated_wait(position)


class SubmittedJobSerializer(JobSerializer):
    """A submission's answer: the job, and whether it is one submitted before."""

    duplicate = serializers.BooleanField(
        read_only=True,
        help_text="True when the job answering is one submitted before with the same "
        "idempotency key, or the live job holding the same unique key.",
    )

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "duplicate"]
        read_only_fields = fields


# DRF's own datetime field, which fixes the API's format: ISO 8601 in the
# current time zone, "Z" for UTC. It holds no state.
_DATETIME = serializers.DateTimeField()


def _datetime(value: Any, tz: Any = None) -> str | None:
    """``_DATETIME.to_representation(value)``, without its per-call setting lookups.

    ``tz`` is the current time zone, if the caller has it already.
    """
    if value is None:
        return None
    if value.tzinfo is None or api_settings.DATETIME_FORMAT.lower() != ISO_8601:
        return _DATETIME.to_representation(value)
    text = value.astimezone(tz or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _progress(job: Job, tz: Any = None) -> dict[str, Any]:
    percent = job.progress_percent
    return {
        "percent": None if percent is None else round(float(percent), PERCENT_DECIMALS),
        "message": job.progress_message,
        "updated_at": _datetime(job.progress_updated_at, tz),
    }


def _shown(error: dict[str, Any], show_traceback: bool) -> dict[str, Any]:
    """A stored error entry with exactly ``JobErrorSerializer``'s fields.

    Entries are written by several statements over the project's life; a key
    one of them did not record (``worker`` of a rescue) reads as null.
    """
    shown = {
        "attempt": error.get("attempt", 0),
        "type": error.get("type", ""),
        "message": error.get("message", ""),
        "at": error.get("at"),
        "worker": error.get("worker"),
    }
    if show_traceback:
        shown["traceback"] = error.get("traceback", "")
    return shown


def _error(job: Job, show_traceback: bool) -> dict[str, Any] | None:
    error = job.error
    if job.status == JobStatus.SUCCEEDED or error is None:
        return None
    return _shown(error, show_traceback)


def estimated_wait(position: tuple) -> float | None:
    """``estimated_wait_seconds`` from a job's figures (see ``queries.POSITION_FIGURES``)."""
    ahead, mean, capacity, until_due = position
    if not capacity:
        return None
    if ahead == 0:
        return round(float(until_due), 3)
    if mean is None:
        return None
    return round(max(float(until_due), ahead * float(mean) / capacity), 3)


def job_data(job: Job, position: tuple | None, *, show_traceback: bool) -> dict[str, Any]:
    """A job as clients see it: every field of ``JobSerializer``, in its order.

    ``position`` is the job's figures while it is queued (None otherwise);
    tracebacks are left out of the errors unless ``show_traceback``.
    """
    elapsed = job.elapsed_seconds
    tz = timezone.get_current_timezone()
    return {
        "id": job.pk,
        "task": job.task,
        "queue": job.queue,
        "priority": job.priority,
        "status": str(job.status),
        "progress": _progress(job, tz),
        "args": job.args,
        "kwargs": job.kwargs,
        "result": job.result,
        "error": _error(job, show_traceback),
        "errors": [_shown(e, show_traceback) for e in job.errors],
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "cancel_requested": bool(job.cancel_requested),
        "created_at": _datetime(job.created_at, tz),
        "scheduled_at": _datetime(job.scheduled_at, tz),
        "started_at": _datetime(job.started_at, tz),
        "finished_at": _datetime(job.finished_at, tz),
        "elapsed_seconds": None if elapsed is None else float(elapsed),
        "position_in_queue": None if position is None else position[0],
        "estimated_wait_seconds": None if position is None else estimated_wait(position),
    }


class ExposedTaskNameField(serializers.CharField):
    """The name of a task exposed to the API; the schema lists the names as an enum."""


class JobSubmitSerializer(serializers.Serializer):
    """A submission; every check runs before anything is stored.

    Rules across fields, which the schema states in words only: the arguments
    must fit the task's parameters (``GET /api/tasks/``); ``scheduled_at``
    and ``delay_seconds`` exclude each other; an ``idempotency_key`` in the
    body must equal the ``Idempotency-Key`` header when both are sent.
    Unknown fields are refused, naming them.
    """

    task = ExposedTaskNameField(
        max_length=255, help_text="Name of an exposed task (see GET /api/tasks/)."
    )
    args = serializers.ListField(child=serializers.JSONField(), required=False, default=list)
    kwargs = serializers.DictField(child=serializers.JSONField(), required=False, default=dict)
    queue = serializers.CharField(
        required=False,
        max_length=100,
        help_text="Queue name (letters, digits, '_', '.', ':', '-'); the task's own by default.",
    )
    priority = serializers.IntegerField(
        required=False, min_value=TASK_MIN_PRIORITY, max_value=TASK_MAX_PRIORITY
    )
    scheduled_at = serializers.DateTimeField(
        required=False, help_text="Run no earlier than this time (not with delay_seconds)."
    )
    delay_seconds = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_DELAY_SECONDS,
        help_text="Run no earlier than this many seconds from now (not with scheduled_at).",
    )
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ATTEMPTS)
    timeout_seconds = serializers.FloatField(
        required=False, min_value=0.001, max_value=MAX_TIMEOUT_SECONDS
    )
    idempotency_key = serializers.CharField(
        required=False,
        max_length=255,
        help_text="Submitting the same key again returns the original job (also the "
        "Idempotency-Key header).",
    )

    unique_key = serializers.CharField(
        required=False,
        max_length=150,
        help_text="While a job of this task submitted by you with this key is queued or "
        "running, submitting it again returns that job (200, duplicate true).",
    )

    def validate_task(self, name: str) -> ExposedTask:
        exposed = get_exposed(name)
        if exposed is None:
            valid = ", ".join(exposed_tasks()) or "none: the project exposes no tasks"
            raise serializers.ValidationError(
                f"{name!r} is not a task exposed to the API. Valid names: {valid}."
            )
        return exposed

    def validate_queue(self, queue: str) -> str:
        if not is_queue_name(queue):
            raise serializers.ValidationError(f"Queue names are {RULE}.")
        return queue

    def validate_delay_seconds(self, value: float) -> float:
        return _finite(value)

    def validate_timeout_seconds(self, value: float) -> float:
        return _finite(value)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict) and (unknown := [k for k in data if k not in self.fields]):
            raise serializers.ValidationError(
                {
                    name: ["Unknown field; the fields are " + ", ".join(self.fields) + "."]
                    for name in unknown
                }
            )
        return super().to_internal_value(data)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "scheduled_at" in data and "delay_seconds" in data:
            raise serializers.ValidationError("Give scheduled_at or delay_seconds, not both.")
        try:
            data["task"].check_arguments(data["args"], data["kwargs"])
        except ArgumentError as e:
            raise serializers.ValidationError({e.field: [str(e)]}) from e
        return data

    def build_task(self) -> Task:
        """The exposed task with this submission's options applied."""
        data = self.validated_data
        exposed: ExposedTask = data["task"]
        run_after = data.get("scheduled_at")
        if "delay_seconds" in data:
            run_after = timezone.now() + timedelta(seconds=data["delay_seconds"])
        return cast(JobQueueTask, exposed.task).using(
            queue_name=data.get("queue"),
            priority=data.get("priority"),
            run_after=run_after,
            max_attempts=data.get("max_attempts"),
            timeout=data.get("timeout_seconds"),
        )


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise serializers.ValidationError("Must be a finite number.")
    return value
