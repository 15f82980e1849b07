"""Queue and worker health for the admin page: figures from indexes, a chart as SVG.

The per-queue figures come from ``queries.queue_stats`` (shared with the
REST API's /api/queues/), which reads only the backlog and the last hour.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobqueue import queries
from jobqueue.conf import get_settings
from jobqueue.models import FINISHED, Job, JobStatus, Worker

CHART_MINUTES = 60
BAR = 10
# The plot area, and the margins that hold the axes' labels.
PLOT_WIDTH, PLOT_HEIGHT = CHART_MINUTES * BAR, 120
LEFT, BOTTOM, TOP = 40, 22, 8
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
    with connection.cursor() as cursor:
        rows = queries.queue_stats(cursor)
    return [
        QueueRow(
            queue=row[0],
            queued=row[1],
            ready=row[2],
            oldest_ready_seconds=float(row[3]) if row[3] is not None else None,
            running=row[4],
            succeeded=row[5],
            failed=row[6],
            cancelled=row[7],
        )
        for row in rows
    ]


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


def throughput_chart(buckets: list[Minute], minutes: int = CHART_MINUTES) -> SafeString:
    """A stacked bar per minute (succeeded over failed), oldest on the left, as inline SVG,
    with a y axis (jobs per minute: 0, half the peak, the peak) and a time axis labelled
    every 10 minutes."""
    now = timezone.now().replace(second=0, microsecond=0)
    by_slot = {minutes - 1 - int((now - b.at).total_seconds() // 60): b for b in buckets}
    peak = max((b.succeeded + b.failed for b in buckets), default=0) or 1
    scale = (PLOT_HEIGHT - TOP) / peak
    base = PLOT_HEIGHT  # the y of the x axis; TOP keeps the peak's label inside

    def bars() -> list[tuple]:
        out = []
        for slot, b in sorted(by_slot.items()):
            if not 0 <= slot < minutes:
                continue
            x = LEFT + slot * BAR
            ok_h, fail_h = b.succeeded * scale, b.failed * scale
            label = f"{b.at:%H:%M}: {b.succeeded} succeeded, {b.failed} failed"
            top, fail_top = base - ok_h - fail_h, base - fail_h
            out.append(
                (x, f"{top:.1f}", f"{ok_h:.1f}", x, f"{fail_top:.1f}", f"{fail_h:.1f}", label)
            )
        return out

    y_ticks = [(base - value * scale, value) for value in sorted({0, peak // 2, peak})]
    x_ticks = [
        (LEFT + slot * BAR, f"{now - timedelta(minutes=minutes - 1 - slot):%H:%M}")
        for slot in range(0, minutes, 10)
    ]
    return format_html(
        '<svg class="jq-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="jobs finished per minute over the last hour">'
        '<g class="jq-y-axis">{y_ticks}<text x="2" y="{mid}" class="jq-axis" '
        'transform="rotate(-90 8 {mid})">jobs / min</text></g>'
        '<g class="jq-x-axis"><line x1="{left}" y1="{base}" x2="{right}" y2="{base}" '
        'class="jq-axis-line"/>{x_ticks}</g>{bars}</svg>',
        w=LEFT + PLOT_WIDTH + 10,
        h=PLOT_HEIGHT + BOTTOM,
        left=LEFT,
        right=LEFT + PLOT_WIDTH,
        base=base,
        mid=PLOT_HEIGHT // 2,
        y_ticks=format_html_join(
            "",
            '<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" class="jq-grid"/>'
            '<text x="{3}" y="{4}" class="jq-axis" text-anchor="end">{5}</text>',
            (
                (LEFT, f"{y:.1f}", LEFT + PLOT_WIDTH, LEFT - 4, f"{y + 3:.1f}", value)
                for y, value in y_ticks
            ),
        ),
        x_ticks=format_html_join(
            "",
            '<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" class="jq-axis-line"/>'
            '<text x="{0}" y="{3}" class="jq-axis" text-anchor="middle">{4}</text>',
            ((x, base, base + 4, base + 15, label) for x, label in x_ticks),
        ),
        bars=format_html_join(
            "",
            '<g><title>{6}</title><rect x="{0}" y="{1}" width="9" height="{2}" '
            'class="jq-bar-ok"/><rect x="{3}" y="{4}" width="9" height="{5}" '
            'class="jq-bar-fail"/></g>',
            bars(),
        ),
    )


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
