"""GET /metrics: the cluster-wide view in Prometheus' text format, read from the database.

Every web process answers with the same figures, so one scrape of any of them
shows the whole cluster: the backlog per queue and state, the age of the
oldest ready job, and the live and lost workers. Counters and histograms of
finished jobs are not here: each worker serves its own on
``runworker --metrics-port`` (jobqueue/worker/telemetry.py), and Prometheus
sums them across workers, so no scrape ever counts finished history.

Each queue's controls are here too: whether it is paused, and its global limits
as the claim reads them (settings or an admin override), so that an alert can
tell a queue held back on purpose from a stuck one.

The statements read only the partial indexes over queued and running jobs
(jobqueue_job_claim, jobqueue_job_lease) and three small tables (workers,
pauses, limits):
their cost grows with the backlog, never with the finished jobs kept. A
scrape every 15 s from every Prometheus replica is cheap by design (see the
figure in README, measured by bench/metrics_cost.py).
"""

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jobqueue.conf import get_settings

# Two scans, each over one partial index (a plain OR of the two statuses would
# let the planner pick a sequential scan of the whole table). The backlog's is
# index-only (jobqueue_job_line holds queue and scheduled_at) and does as little
# per row as it can: one count, one filtered count, one min; the oldest job is
# ready if any is.
BACKLOG = """
SELECT queue, total - scheduled, scheduled, 0,
       CASE WHEN oldest <= now() THEN extract(epoch FROM now() - oldest) END
FROM (SELECT queue, count(*) AS total, count(*) FILTER (WHERE scheduled_at > now()) AS scheduled,
             min(scheduled_at) AS oldest
      FROM jobqueue_job WHERE status = 'queued' GROUP BY queue) AS waiting
UNION ALL
SELECT queue, 0, 0, count(*), NULL FROM jobqueue_job WHERE status = 'running' GROUP BY queue
"""

# A worker is lost once flagged by a rescue, or silent for longer than the lease
# (as in the admin's health page).
WORKERS = """
SELECT count(*) FILTER (WHERE live), count(*) FILTER (WHERE NOT live)
FROM (SELECT lost_at IS NULL AND last_heartbeat >= now() - make_interval(secs => %s) AS live
      FROM jobqueue_worker) AS w
"""

# The paused queues and the limited ones, one row per queue (both tables hold a
# row per queue at most).
CONTROLS = """
SELECT coalesce(p.queue, l.queue), p.queue IS NOT NULL, l.concurrency, l.rate / l.per
FROM jobqueue_queuepause AS p FULL JOIN jobqueue_queuelimit AS l ON l.queue = p.queue
"""


class ClusterCollector(Collector):
    """Gauges of the cluster as the database sees it at the moment of the scrape.

    A queue once seen keeps its series, at 0 when it has drained, so that a
    drained queue reads 0 rather than no data (and alerts on it resolve).
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "jobqueue_jobs",
            "Jobs by queue and state: ready (due), scheduled (due later), running.",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "jobqueue_oldest_ready_age_seconds",
            "Seconds the oldest ready job of the queue has been due.",
            labels=["queue"],
        )
        workers = GaugeMetricFamily(
            "jobqueue_workers", "Worker processes, live and lost.", labels=["state"]
        )
        paused = GaugeMetricFamily(
            "jobqueue_queue_paused",
            "1 while the queue is paused (no worker claims its jobs), else 0.",
            labels=["queue"],
        )
        concurrency = GaugeMetricFamily(
            "jobqueue_queue_concurrency_limit",
            "Most of the queue's jobs running at once across all workers (limited queues only).",
            labels=["queue"],
        )
        rate = GaugeMetricFamily(
            "jobqueue_queue_rate_limit_per_second",
            "Starts per second the queue's rate limit allows across all workers (rated only).",
            labels=["queue"],
        )
        counts: dict[str, list[int]] = {queue: [0, 0, 0] for queue in self.seen}
        with connection.cursor() as cursor:
            cursor.execute(BACKLOG)
            for queue, ready, scheduled, running, oldest_age in cursor.fetchall():
                total = counts.setdefault(queue, [0, 0, 0])
                total[0] += ready
                total[1] += scheduled
                total[2] += running
                if oldest_age is not None:
                    oldest.add_metric([queue], float(oldest_age))
            cursor.execute(WORKERS, [get_settings().LEASE])
            live, lost = cursor.fetchone()
            cursor.execute(CONTROLS)
            controls = cursor.fetchall()
        pauses = {queue for queue, is_paused, _, _ in controls if is_paused}
        for queue, _, most, per_second in controls:
            counts.setdefault(queue, [0, 0, 0])
            if most is not None:
                concurrency.add_metric([queue], most)
            if per_second is not None:
                rate.add_metric([queue], float(per_second))
        self.seen.update(counts)
        for queue, (ready, scheduled, running) in sorted(counts.items()):
            jobs.add_metric([queue, "ready"], ready)
            jobs.add_metric([queue, "scheduled"], scheduled)
            jobs.add_metric([queue, "running"], running)
            paused.add_metric([queue], 1 if queue in pauses else 0)
        workers.add_metric(["live"], live)
        workers.add_metric(["lost"], lost)
        yield from (jobs, oldest, workers, paused, concurrency, rate)


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(ClusterCollector())


def allowed(request: HttpRequest) -> bool:
    """With JOBQUEUE_METRICS_TOKEN set, only its bearer; without it, only in DEBUG."""
    token = getattr(settings, "JOBQUEUE_METRICS_TOKEN", "")
    if not token:
        return settings.DEBUG
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The cluster's metrics; 401 for a request without the token."""
    if not allowed(request):
        response = HttpResponse(
            "401 Unauthorized: send Authorization: Bearer <token>\n", status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="jobqueue metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
