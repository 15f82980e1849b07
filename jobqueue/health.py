"""Queue and worker health for the admin page: figures from indexes (drawn by admin/charts).

The per-queue figures come from ``queries.queue_stats`` (shared with the
REST API's /api/queues/), which reads only the backlog and the last hour.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from jobqueue import queries
from jobqueue.conf import get_settings
from jobqueue.models import FINISHED, Job, JobStatus, QueuePause, QueueSample, Worker

CHART_MINUTES = 60
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # where depth buckets start counting
# Percentiles are read from at most this many of the last hour's newest finished jobs.
TIMINGS_SAMPLE = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRow:
    queue: str
    queued: int
    ready: int
    oldest_ready_seconds: float | None
    running: int
    succeeded: int  # this and the next two: finished in the last hour
    failed: int
    cancelled: int
    paused: bool = False

    @property
    def failure_rate(self) -> float | None:
        done = self.succeeded + self.failed
        return 100 * self.failed / done if done else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Wait and run time percentiles (seconds) and outcomes of one queue or one task."""

    name: str
    succeeded: int
    failed: int
    wait: tuple[float, float, float] | None  # p50, p95, p99
    run: tuple[float, float, float] | None

    @property
    def failure_rate(self) -> float | None:
        done = self.succeeded + self.failed
        return 100 * self.failed / done if done else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Minute:
    at: datetime
    succeeded: int
    failed: int


def queue_rows() -> list[QueueRow]:
    """Every queue with a backlog, running or recently finished jobs, or a pause."""
    with connection.cursor() as cursor:
        rows = queries.queue_stats(cursor)
    paused = set(QueuePause.objects.values_list("queue", flat=True))
    figures = {
        row[0]: QueueRow(
            queue=row[0],
            queued=row[1],
            ready=row[2],
            oldest_ready_seconds=float(row[3]) if row[3] is not None else None,
            running=row[4],
            succeeded=row[5],
            failed=row[6],
            cancelled=row[7],
            paused=row[0] in paused,
        )
        for row in rows
    }
    for queue in paused - figures.keys():
        figures[queue] = QueueRow(
            queue=queue, queued=0, ready=0, oldest_ready_seconds=None, running=0,
            succeeded=0, failed=0, cancelled=0, paused=True,
        )  # fmt: skip
    return [figures[q] for q in sorted(figures)]


def timings() -> tuple[list[Timing], list[Timing]]:
    """Per queue and per task, over the newest jobs finished in the last hour."""
    with connection.cursor() as cursor:
        rows = queries.timings(cursor, TIMINGS_SAMPLE)

    def percentiles(values: list[float | None] | None) -> tuple[float, float, float] | None:
        if not values or values[0] is None:
            return None
        p50, p95, p99 = (float(v or 0) for v in values)
        return p50, p95, p99

    def timing(name: str, row: tuple) -> Timing:
        return Timing(
            name=name,
            succeeded=row[2],
            failed=row[3],
            wait=percentiles(row[4]),
            run=percentiles(row[5]),
        )

    per_queue = [timing(row[0], row) for row in rows if row[0] is not None]
    per_task = [timing(row[1], row) for row in rows if row[1] is not None]
    return per_queue, per_task


def throughput(minutes: int = CHART_MINUTES) -> list[Minute]:
    """Jobs succeeded and failed per minute over the last ``minutes``.

    A range scan of the jobqueue_job_finished index.
    """
    since = timezone.now() - timedelta(minutes=minutes)
    rows = (
        Job.objects.filter(status__in=FINISHED, finished_at__gte=since)
        .annotate(minute=TruncMinute("finished_at"))
        .values("minute")
        .annotate(
            succeeded=Count("id", filter=Q(status=JobStatus.SUCCEEDED)),
            failed=Count("id", filter=Q(status=JobStatus.FAILED)),
        )
        .order_by("minute")
    )
    return [Minute(at=r["minute"], succeeded=r["succeeded"], failed=r["failed"]) for r in rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class Depth:
    """The backlog over all queues at one time."""

    at: datetime
    ready: int
    scheduled: int
    running: int


def depth(span: timedelta, bucket: timedelta) -> list[Depth]:
    """The backlog samples of the last ``span``, the largest of each ``bucket``."""
    rows = QueueSample.objects.filter(queue="", minute__gte=timezone.now() - span).order_by(
        "minute"
    )
    merged: dict[datetime, Depth] = {}
    for row in rows:
        start = row.minute - (row.minute - EPOCH) % bucket
        seen = merged.get(start)
        merged[start] = Depth(
            at=start,
            ready=max(row.ready, seen.ready if seen else 0),
            scheduled=max(row.scheduled, seen.scheduled if seen else 0),
            running=max(row.running, seen.running if seen else 0),
        )
    return list(merged.values())


def record_sample() -> None:
    """Sample the backlog for this minute if nobody has (the health page and workers call it)."""
    with connection.cursor() as cursor:
        queries.record_sample(cursor)


def is_lost(worker: Worker) -> bool:
    """Flagged lost by a rescue, or silent for longer than the lease."""
    stale = timezone.now() - timedelta(seconds=get_settings().LEASE)
    return worker.lost_at is not None or worker.last_heartbeat < stale


def running_per_worker() -> dict[int, int]:
    """Jobs in hand per worker id, read through the partial index over running jobs."""
    rows = Job.objects.running().values("worker").annotate(n=Count("id")).values_list("worker", "n")
    return {worker: n for worker, n in rows if worker is not None}


def recent_jobs_of(worker: Worker, limit: int = 20) -> list[Job]:
    """The newest jobs that ``worker`` ran an attempt of and that finished in the last hour.

    A backward range scan of the jobqueue_job_finished index, stopped after ``limit``
    matches (``runs`` keeps each attempt's worker after the job's own link is cleared).
    """
    since = max(worker.started_at, timezone.now() - timedelta(hours=1))
    return list(
        Job.objects.finished()
        .filter(finished_at__gte=since, runs__contains=[{"worker_id": worker.pk}])
        .only("id", "task", "status", "finished_at")
        .order_by("-finished_at", "-id")[:limit]
    )


def worker_rows(limit: int = 200) -> list[Worker]:
    """Live workers first, then the most recently lost, each with its running job count."""
    workers = list(Worker.objects.order_by("lost_at", "-last_heartbeat")[:limit])
    in_hand = running_per_worker()
    for worker in workers:
        worker.in_hand = in_hand.get(worker.pk, 0)  # type: ignore[attr-defined]
        worker.is_lost = is_lost(worker)  # type: ignore[attr-defined]
    return workers


def pending_migrations() -> list[str]:
    """The migrations not applied yet (app.name), from Django's own migration graph."""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{m.app_label}.{m.name}" for m, _ in plan]


def queues_served(queues: list[str]) -> dict[str, int]:
    """For each of ``queues``: the live workers serving it (those listing it, or every queue)."""
    stale = timezone.now() - timedelta(seconds=get_settings().LEASE)
    live = Worker.objects.filter(lost_at__isnull=True, last_heartbeat__gte=stale)
    served = dict.fromkeys(queues, 0)
    for worker_queues in live.values_list("queues", flat=True):
        for queue in queues:
            if not worker_queues or queue in worker_queues:
                served[queue] += 1
    return served
