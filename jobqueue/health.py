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
from jobqueue.models import FINISHED, Job, JobStatus, QueuePause, Worker

CHART_MINUTES = 60
CHART_WIDTH, CHART_HEIGHT, BAR = 600, 120, 10


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
    """A stacked bar per minute (succeeded over failed), oldest on the left, as inline SVG."""
    now = timezone.now().replace(second=0, microsecond=0)
    by_slot = {minutes - 1 - int((now - b.at).total_seconds() // 60): b for b in buckets}
    peak = max((b.succeeded + b.failed for b in buckets), default=0) or 1
    scale = (CHART_HEIGHT - 20) / peak

    def bars() -> list[tuple]:
        out = []
        for slot, b in sorted(by_slot.items()):
            if not 0 <= slot < minutes:
                continue
            x = slot * BAR
            ok_h, fail_h = b.succeeded * scale, b.failed * scale
            label = f"{b.at:%H:%M}: {b.succeeded} succeeded, {b.failed} failed"
            top, fail_top = CHART_HEIGHT - ok_h - fail_h, CHART_HEIGHT - fail_h
            out.append(
                (x, f"{top:.1f}", f"{ok_h:.1f}", x, f"{fail_top:.1f}", f"{fail_h:.1f}", label)
            )
        return out

    return format_html(
        '<svg class="jq-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="jobs finished per minute over the last hour">'
        '<text x="2" y="12" class="jq-axis">{peak} / min</text>'
        '<line x1="0" y1="{h}" x2="{w}" y2="{h}" class="jq-axis-line"/>{bars}</svg>',
        w=CHART_WIDTH,
        h=CHART_HEIGHT,
        peak=peak,
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


def worker_rows(limit: int = 200) -> list[Worker]:
    """Live workers first, then the most recently lost, each with its running job count."""
    workers = list(Worker.objects.order_by("lost_at", "-last_heartbeat")[:limit])
    in_hand = running_per_worker()
    for worker in workers:
        worker.in_hand = in_hand.get(worker.pk, 0)  # type: ignore[attr-defined]
        worker.is_lost = is_lost(worker)  # type: ignore[attr-defined]
    return workers
