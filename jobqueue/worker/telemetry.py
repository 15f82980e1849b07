"""One worker's own metrics, its job events, and the HTTP server behind --metrics-port.

Everything is recorded in the supervisor, from what it already learns: the
rows of each claim, each child's report of an attempt (its start time and
duration), the rescues, the lost connections and the jobs given back at
shutdown. Children record nothing, so their hot loop stays as it is and no
multiprocess collection is needed. The supervisor's other modules call the
functions below, one call each; this module holds the metric definitions.

``runworker --metrics-port N`` serves ``/metrics`` (these metrics, plus the
process's own from prometheus_client) and ``/healthz`` (liveness: 200 while the
loop turns and the heartbeat succeeds, 503 otherwise) from a daemon thread.
The cluster-wide gauges (backlog, workers) are the web app's /metrics
(jobqueue/metrics.py).
"""

import os
import socket
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from jobqueue.events import job_event
from jobqueue.queries import ClaimedJob

if TYPE_CHECKING:
    from jobqueue.conf import JobQueueSettings
    from jobqueue.worker.children import Child, InHand
    from jobqueue.worker.outcome import Outcome, Report

disable_created_metrics()  # no *_created series: they double the series and nobody graphs them

# Jobs run from 10 ms to 10 minutes, and wait from a millisecond to an hour.
SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

FINISHED = Counter(
    "jobqueue_jobs_finished",
    "Attempts finished here, by outcome: succeeded, failed, retried (failed, attempts left), "
    "cancelled.",
    ["queue", "task", "outcome"],
)
DURATION = Histogram(
    "jobqueue_job_duration_seconds",
    "Seconds an attempt ran in its child.",
    ["queue", "task"],
    buckets=SECONDS,
)
WAIT = Histogram(
    "jobqueue_job_wait_seconds",
    "Seconds from when a job was due (enqueued, or its run_after) to its start.",
    ["queue"],
    buckets=SECONDS,
)
RESCUED = Counter("jobqueue_rescued", "Jobs this worker rescued from lost workers.")
CLAIM_BATCH = Histogram(
    "jobqueue_claim_batch_size",
    "Jobs taken by one claim statement.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
DB_RECONNECTS = Counter(
    "jobqueue_db_reconnects", "Times the worker's database connection was lost or refused."
)
BUSY = Gauge(
    "jobqueue_worker_busy_ratio",
    "Share of the worker's slots running a job now (a child each in process mode; with "
    "--threads or --async-slots, each child's slots of the modes seen).",
)


class _Pool(Protocol):
    @property
    def children(self) -> "list[Child]": ...


class _Dispatcher(Protocol):
    def capacity(self) -> int: ...


class _Lease(Protocol):
    def expired(self, now: float) -> bool: ...


class Attached(Protocol):
    """What telemetry reads of the supervisor passed to attach(): a protocol, so that this
    module need not import the supervisor, which imports it (no import cycle)."""

    @property
    def worker_id(self) -> int | None: ...
    @property
    def conf(self) -> "JobQueueSettings": ...
    @property
    def pool(self) -> _Pool: ...
    @property
    def dispatcher(self) -> _Dispatcher: ...
    @property
    def lease(self) -> _Lease: ...


_IDENTITY = {"host": socket.gethostname(), "pid": os.getpid()}
_supervisor: "Attached | None" = None
_due: dict[int, float] = {}  # job id: when it was due (epoch seconds), from claim to start
_last_tick = time.monotonic()

OUTCOME_LABELS = {"queued": "retried"}  # an attempt that failed with attempts left


def attach(supervisor: Attached) -> None:
    """The worker whose identity events carry, and whose state /healthz and the gauge read."""
    global _supervisor
    _supervisor = supervisor
    _IDENTITY["pid"] = os.getpid()
    BUSY.set_function(_busy_ratio)


def _worker() -> dict[str, Any]:
    worker_id = _supervisor.worker_id if _supervisor is not None else None
    return {**_IDENTITY, "id": worker_id}


def _busy_ratio() -> float:
    if _supervisor is None:
        return 0.0
    children = list(_supervisor.pool.children)  # read from the server's thread: copy first
    running = sum(bool(child.jobs) + len(child.flying) for child in children)
    return min(1.0, running / max(1, _supervisor.dispatcher.capacity()))


# ------------------------------------------------------------------ hooks
def tick() -> None:
    """The supervisor's loop turned."""
    global _last_tick
    _last_tick = time.monotonic()


def claimed(rows: list[ClaimedJob]) -> list[ClaimedJob]:
    """A claim took ``rows`` (queries.claimed's); returns them unchanged."""
    CLAIM_BATCH.observe(len(rows))
    worker = _worker()
    for job in rows:
        _due[job.id] = job.scheduled_at.timestamp()
        job_event(
            "claimed",
            job_id=job.id,
            task=job.task,
            queue=job.queue,
            attempt=job.attempts,
            worker=worker,
        )
    return rows


def attempt_finished(job: "InHand", report: "Report", outcome: "Outcome") -> None:
    """A child's report (or death) ended an attempt, and ``outcome`` was decided for it."""
    a = job.assignment
    label = OUTCOME_LABELS.get(outcome.status, outcome.status)
    FINISHED.labels(job.queue, a.task, label).inc()
    due = _due.pop(a.job_id, None)
    wait = None
    if report.started_at is not None:
        DURATION.labels(job.queue, a.task).observe(report.duration)
        if due is not None:
            wait = max(0.0, report.started_at - due)
            WAIT.labels(job.queue).observe(wait)
        _started(job, report.started_at, wait)
    error = report.error or {}
    job_event(
        label,
        **_fields(job),
        worker=_worker(),
        duration=report.duration if report.started_at is not None else None,
        wait=wait,
        error_class=error.get("type"),
        error_message=error.get("message"),
    )


def _fields(job: "InHand") -> dict[str, Any]:
    a = job.assignment
    return {"job_id": a.job_id, "task": a.task, "queue": job.queue, "attempt": a.attempts}


def _started(job: "InHand", at: float, wait: float | None) -> None:
    """'started', written once the supervisor learns when: the child reports it with the
    outcome (so that children log nothing), or the job is given back while it runs."""
    started_at = datetime.fromtimestamp(at, UTC).isoformat()
    job_event("started", **_fields(job), worker=_worker(), started_at=started_at, wait=wait)


def rescued(rows: Iterable[tuple]) -> None:
    """This worker rescued jobs (id, new status, queue) whose lease had run out."""
    worker = _worker()
    for job_id, status, queue in rows:
        RESCUED.inc()
        job_event("rescued", job_id=job_id, task=None, queue=queue, attempt=None, worker=worker,
                  status=status)  # fmt: skip


def reconnecting() -> None:
    """The database connection was lost (or could not be made): a new one will be tried."""
    DB_RECONNECTS.inc()


def given_back(jobs: Iterable["InHand"]) -> None:
    """At shutdown, these unfinished jobs went back to their queue."""
    for job in jobs:
        due = _due.pop(job.assignment.job_id, None)
        if job.began_at:  # it was running
            at = time.time() - (time.monotonic() - job.began_at)
            _started(job, at, None if due is None else max(0.0, at - due))
        job_event("given_back", **_fields(job), worker=_worker())


# ------------------------------------------------------------------ serving
def health() -> tuple[bool, str]:
    """Alive: the loop turned recently and the last heartbeat still holds the lease."""
    if _supervisor is None:
        return False, "no worker attached"
    now = time.monotonic()
    stale = max(5.0, _supervisor.conf.LEASE / 2)
    if now - _last_tick > stale:
        return False, f"the loop has not turned for {now - _last_tick:.1f} s"
    if _supervisor.lease.expired(now):
        return False, "no heartbeat has succeeded within 4/5 of the lease"
    return True, "ok"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the worker's log."""


def serve(port: int, host: str = "0.0.0.0") -> ThreadingWSGIServer:
    """Serve /metrics and /healthz on ``host:port`` from a daemon thread."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok, why = health()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [why.encode() + b"\n"]
        return metrics(environ, start_response)

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="jobqueue-metrics", daemon=True).start()
    return server
