"""Jobs and workers as rows: the only state jobqueue has."""

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, models, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskResultStatus
from django.utils import timezone

from jobqueue import queries
from jobqueue.scheduling.limits import MAX_RATE


class JobStatus(models.TextChoices):
    # Waiting to be claimed; also a job delayed or waiting to retry (scheduled_at in the future).
    QUEUED = "queued", "Queued"
    # Claimed by a worker, which heart-beats while it runs.
    RUNNING = "running", "Running"
    # The task returned; result holds its JSON return value.
    SUCCEEDED = "succeeded", "Succeeded"
    # The last attempt raised, timed out or lost its worker; errors holds every attempt.
    FAILED = "failed", "Failed"
    # Cancelled while queued, or stopped on a cancel request while running.
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def finished(cls) -> list[str]:
        return [cls.SUCCEEDED, cls.FAILED, cls.CANCELLED]

    def as_task_status(self) -> TaskResultStatus:
        """Django's view of the status: it has no cancelled state, so that reads as FAILED."""
        return {
            JobStatus.QUEUED: TaskResultStatus.READY,
            JobStatus.RUNNING: TaskResultStatus.RUNNING,
            JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
            JobStatus.FAILED: TaskResultStatus.FAILED,
            JobStatus.CANCELLED: TaskResultStatus.FAILED,
        }[self]


FINISHED = JobStatus.finished()


class JobQuerySet(models.QuerySet["Job"]):
    def queued(self) -> "JobQuerySet":
        return self.filter(status=JobStatus.QUEUED)

    def ready(self) -> "JobQuerySet":
        """Queued jobs whose time has come, in claim order."""
        return (
            self.queued()
            .filter(scheduled_at__lte=timezone.now())
            .order_by("-priority", "scheduled_at", "id")
        )

    def running(self) -> "JobQuerySet":
        return self.filter(status=JobStatus.RUNNING)

    def finished(self) -> "JobQuerySet":
        return self.filter(status__in=FINISHED)

    def owned_by(self, user: Any) -> "JobQuerySet":
        return self.filter(owner=user)

    def cancel(self) -> list[int]:
        """Cancel these jobs: queued ones at once, running ones at their next check.

        Atomic against workers (row locks); returns the ids that changed.
        """
        return self._change(queries.cancel)

    def retry(self) -> list[int]:
        """Re-queue these jobs if failed or cancelled; returns the ids that changed."""
        return self._change(queries.retry)

    def _change(self, statement: Any) -> list[int]:
        ids = list(self.values_list("id", flat=True))
        return change_jobs(statement, ids, using=self.db) if ids else []


def change_jobs(statement: Any, ids: Sequence[int], *, using: str) -> list[int]:
    """Run ``statement`` (queries.cancel or queries.retry) on ``ids``; the ids it changed.

    BULK_BATCH ids at a time, newest first, each batch a statement of its own and, outside
    a transaction, a transaction of its own: a "select all" over a backlog of 200,000 jobs
    would otherwise hold the row locks of the running ones among them for the whole
    statement, seconds in which their workers' heartbeats wait (and fail at their lock
    timeout), and past a lease the workers' fences fall. Newest first, so that of the
    failed rows of one unique key, the newest goes back whatever batches they fall in.
    """
    newest_first = sorted(ids, reverse=True)
    changed: list[int] = []
    for start in range(0, len(newest_first), BULK_BATCH):
        changed += _change_batch(statement, newest_first[start : start + BULK_BATCH], using)
    return changed


def _change_batch(statement: Any, ids: list[int], using: str) -> list[int]:
    """One batch of change_jobs. Only a retry can raise IntegrityError: an enqueue of a
    unique key committed after the statement's snapshot, so the unique index refused the
    update and nothing changed (queries.RETRY). A new statement sees that job and leaves
    its key be. Inside a transaction the statement runs in a savepoint, so that the
    refusal spares the rest."""
    connection = connections[using]
    for _ in range(RETRY_RUNS):
        guard = transaction.atomic(using=using) if connection.in_atomic_block else nullcontext()
        try:
            with guard, connection.cursor() as cursor:
                return list(statement(cursor, ids))
        except IntegrityError:
            continue
    return []


# Jobs one cancel or retry statement changes at most (change_jobs). A batch took 30-60 ms
# on the 2-core test machine (a test run beside it), under a heartbeat's lock timeout
# (LEASE / 10, 0.2-2 s) many times over.
BULK_BATCH = 1000
# How many times a retry runs while enqueues of its jobs' unique keys keep slipping in
# between its snapshot and its update: each run sees those that came before it.
RETRY_RUNS = 3


class Job(models.Model):
    """One unit of work: what to run, where it stands, and what came of it."""

    task = models.CharField(max_length=255, help_text="Dotted path of the django.tasks Task.")
    queue = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    # One entry per failed attempt: {"attempt", "type", "message", "traceback", "at"}.
    errors = models.JSONField(default=list)

    progress_percent = models.FloatField(null=True, blank=True)
    progress_message = models.TextField(blank=True, default="")
    progress_updated_at = models.DateTimeField(null=True, blank=True)

    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    timeout_seconds = models.FloatField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The fencing token of the attempt that holds the job: a fresh number from a
    # sequence at every claim, NULL while nobody holds it. Every write an attempt
    # makes (ack, give-back, progress, heartbeat) matches it, so a late writer
    # from an attempt that lost the job (rescued, re-claimed) changes nothing.
    lease_token = models.BigIntegerField(null=True, blank=True, editable=False)
    # One entry per attempt that ended, whoever ended it: {"attempt", "worker_id",
    # "worker" (host:pid), "started_at", "finished_at", "outcome"}; kept after the
    # worker's own row is gone, so staff can see where each attempt ran.
    runs = models.JSONField(default=list, db_default=[], blank=True, editable=False)

    created_at = models.DateTimeField(default=timezone.now)
    scheduled_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    # Both foreign keys are indexed by partial indexes below (only the rows that
    # have one), not by Django's default index over every row: each index on all
    # rows is one more write on every insert, claim and acknowledgement.
    worker = models.ForeignKey(
        "Worker",
        null=True,
        blank=True,
        on_delete=models.DB_SET_NULL,
        related_name="jobs",
        db_index=False,
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DB_SET_NULL,
        related_name="jobs",
        db_index=False,
    )
    # NULL, not "", for "no key": the unique constraint applies only to real keys.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001

    # Unique jobs (jobqueue/scheduling/unique.py): the key, and the statuses in which this
    # job blocks
    # another with the same key. Enforced by the partial unique index jobqueue_job_unique
    # on (unique_key) WHERE unique_states ? status, made by raw SQL in migration 0007
    # because its condition compares two columns of the row.
    unique_key = models.TextField(null=True, blank=True, editable=False)  # noqa: DJ001
    unique_states = models.JSONField(null=True, blank=True, editable=False)
    # Concurrency keys (jobqueue/keys.py): at most concurrency_limit running jobs per key.
    # NULL for other jobs; the two partial indexes the claim reads (migration 0008, raw
    # SQL) leave those out, so they cost other jobs nothing.
    concurrency_key = models.TextField(null=True, blank=True, editable=False)  # noqa: DJ001
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True, editable=False)

    objects = JobQuerySet.as_manager()

    # Not a column: set by JobQueueBackend.enqueue_job on the live job it returns when a
    # unique task's key was taken (the API answers 200 with it, not 202).
    duplicate = False

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("retry_job", "Can retry jobs"),
            ("cancel_job", "Can cancel jobs"),
            ("purge_jobs", "Can purge finished jobs"),
        ]
        indexes = [
            # The claim reads this index in claim order and nothing else.
            models.Index(
                models.F("priority").desc(),
                "scheduled_at",
                "id",
                name="jobqueue_job_claim",
                condition=Q(status="queued"),
            ),
            # Rescue of jobs whose worker stopped heart-beating.
            models.Index(
                fields=["heartbeat_at"],
                name="jobqueue_job_lease",
                condition=Q(status="running"),
            ),
            # Finished jobs by finish time: purge_jobs walks it oldest first, and the
            # API's throughput figures read the last hour from it alone (index-only).
            models.Index(
                fields=["finished_at", "id"],
                include=["queue", "status", "started_at"],
                name="jobqueue_job_finished",
                condition=Q(status__in=FINISHED),
            ),
            # A user's jobs, newest first (the API's list); jobs enqueued by code have none.
            models.Index(
                fields=["owner", "-id"], name="jobqueue_job_owned", condition=Q(owner__isnull=False)
            ),
            # The jobs a worker holds (heartbeat, and the foreign key when a worker row goes).
            models.Index(
                fields=["worker"], name="jobqueue_job_worker", condition=Q(worker__isnull=False)
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=TASK_MIN_PRIORITY, priority__lte=TASK_MAX_PRIORITY),
                name="jobqueue_job_priority_range",
            ),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="jobqueue_job_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1), name="jobqueue_job_max_attempts_positive"
            ),
            models.CheckConstraint(
                condition=~Q(status__in=FINISHED) | Q(finished_at__isnull=False),
                name="jobqueue_job_finished_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status="running") | Q(started_at__isnull=False),
                name="jobqueue_job_running_has_start",
            ),
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                name="jobqueue_job_idempotency",
                condition=Q(idempotency_key__isnull=False),
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} #{self.pk} ({self.status})"

    @property
    def error(self) -> dict[str, Any] | None:
        """The error that ended the job, or the last failed attempt's while it waits to retry."""
        return self.errors[-1] if self.errors else None

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def elapsed_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())


class WorkerQuerySet(models.QuerySet["Worker"]):
    def live(self) -> "WorkerQuerySet":
        return self.filter(lost_at__isnull=True)

    def lost(self) -> "WorkerQuerySet":
        return self.filter(lost_at__isnull=False)


class Worker(models.Model):
    """One runworker supervisor; its row lives while it heart-beats."""

    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list, help_text="Queue names, or [] for all queues.")
    concurrency = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)
    # Set by another worker's rescue when this one stopped heart-beating.
    lost_at = models.DateTimeField(null=True, blank=True)
    # Its LEASE: how long its jobs' heartbeats may age before another worker rescues them.
    lease_seconds = models.FloatField(
        null=True,
        blank=True,
        help_text="The lease this worker keeps (its LEASE setting), in seconds.",
    )

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"


class ScheduleQuerySet(models.QuerySet["Schedule"]):
    def configured(self) -> "ScheduleQuerySet":
        """The rows of the schedules declared in JOBQUEUE["PERIODIC"], created if missing."""
        from jobqueue.conf import get_settings

        names = sorted(get_settings().PERIODIC)
        with connections[self.db].cursor() as cursor:
            queries.ensure_schedules(cursor, names)
        return self.filter(name__in=names)

    def enable(self) -> int:
        """Switch these schedules on from now: ticks that passed while one was off do not
        fire (its last_tick moves to now). Returns how many were off."""
        return self.filter(enabled=False).update(enabled=True, last_tick=Now())

    def disable(self) -> int:
        """Switch these schedules off; returns how many were on. An enqueue that already
        holds the row's lock commits first (queries.ENQUEUE_TICKS), none starts after."""
        return self.filter(enabled=True).update(enabled=False)


class Schedule(models.Model):
    """The database side of a periodic schedule declared in settings.

    One row per schedule name: whether it is on (the admin's toggle, kept here so
    that every worker sees it) and the newest tick enqueued, which the workers'
    compare-and-set moves forward, so that each tick is enqueued exactly once.
    """

    name = models.CharField(max_length=200, primary_key=True)
    enabled = models.BooleanField(default=True)
    # The newest tick enqueued (or the moment the schedule was first seen or enabled).
    last_tick = models.DateTimeField()
    # The job of that tick; NULL once purged. The table is tiny, so the foreign key
    # needs no index for the purge's ON DELETE SET NULL.
    last_job = models.ForeignKey(
        Job,
        null=True,
        blank=True,
        on_delete=models.DB_SET_NULL,
        related_name="+",
        db_index=False,
    )

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class QueueLimit(models.Model):
    """A queue's global limits, honoured by every worker's claim (jobqueue/scheduling/limits.py).

    Workers write the rows of ``JOBQUEUE["QUEUES"]`` when they connect (source
    "settings"); a row staff edit in the admin becomes source "admin", and
    settings no longer overwrite it until it is reset. The table also has a
    column the model leaves out, ``starts`` (timestamptz[], migration 0008): the
    rate limit's sliding log of the queue's latest claim times, which only the
    claim reads and writes (queries.CLAIM).
    """

    SOURCES = [("settings", "settings"), ("admin", "admin override")]

    queue = models.CharField(max_length=100, primary_key=True)
    concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many of the queue's jobs run at once."
    )
    rate = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many starts in any window of 'per' seconds."
    )
    per = models.FloatField(null=True, blank=True, help_text="The rate's window, in seconds.")
    source = models.CharField(max_length=10, choices=SOURCES, default="admin")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["queue"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(rate__isnull=True) & models.Q(per__isnull=True))
                | (models.Q(rate__gte=1) & models.Q(per__gt=0)),
                name="jobqueue_queuelimit_rate_has_window",
            ),
            models.CheckConstraint(
                condition=models.Q(concurrency__isnull=True) | models.Q(concurrency__gte=1),
                name="jobqueue_queuelimit_concurrency_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.queue} (limited)"

    def clean(self) -> None:
        """A rate without a window counts per second; a window without a rate means nothing;
        a rate allows at most limits.MAX_RATE starts per window (its log's size)."""
        if self.rate is not None and self.rate > MAX_RATE:
            raise ValidationError(
                {"rate": f"At most {MAX_RATE:,} starts per window: use a shorter window."}
            )
        if self.rate is not None and self.per is None:
            self.per = 1.0
        if self.rate is None:
            self.per = None


class QueuePause(models.Model):
    """A paused queue: while its row exists, no worker claims the queue's jobs.

    The claim reads this table in the same statement (queries.CLAIM), so a pause
    holds from its commit on; jobqueue/scheduling/pauses.py says how a pause waits out the
    claims already under way. Enqueuing into a paused queue still works.
    """

    queue = models.CharField(max_length=100, primary_key=True)
    paused_at = models.DateTimeField(default=timezone.now)
    # Who paused it (a user name, or "manage.py queues"), for the health page.
    paused_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["queue"]
        permissions = [("pause_queue", "Can pause and resume queues")]

    def __str__(self) -> str:
        return f"{self.queue} (paused)"


class QueueSample(models.Model):
    """The backlog of one queue in one minute, for the health page's depth-over-time chart.

    Written at most once a minute (``samples.record``) from the backlog's own indexes,
    so the chart never reads the job history; ``purge_jobs`` prunes old minutes. The
    row with queue "" is the total over all queues, written even when it is zero, so a
    minute without a row means nobody sampled it.
    """

    minute = models.DateTimeField()
    queue = models.CharField(max_length=100)
    ready = models.PositiveIntegerField()
    scheduled = models.PositiveIntegerField()
    running = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["minute", "queue"], name="jobqueue_sample_minute")
        ]

    def __str__(self) -> str:
        return f"{self.queue or 'all queues'} at {self.minute:%H:%M}"
