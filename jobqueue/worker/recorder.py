"""The outcome recorder: outcomes of finished attempts, written in batches and fenced.

An outcome is decided as soon as a child reports (or dies), kept here until an
ack has committed it, and only then forgotten; while it waits, its job stays
'running' in the database and the heartbeat keeps renewing its lease. Every
outcome carries its attempt's fencing token, and the ack writes only rows that
still carry it, so an outcome of an attempt that lost its job changes nothing.
"""

import logging
import time
from datetime import UTC, datetime

import psycopg

from jobqueue import queries
from jobqueue.conf import JobQueueSettings
from jobqueue.exceptions import JobCancelled, UnstorableResult
from jobqueue.worker import telemetry
from jobqueue.worker.backoff import retry_delay
from jobqueue.worker.children import InHand
from jobqueue.worker.outcome import Outcome, Report, decide, error_of

logger = logging.getLogger("jobqueue.worker")

# Outcomes are written in batches: when this many are waiting, when the
# oldest has waited ACK_DELAY seconds, or at once when nothing else is running.
# An outcome is never visible before it is committed; batching only delays it.
ACK_BATCH = 64
ACK_DELAY = 0.01


class OutcomeRecorder:
    def __init__(self, conf: JobQueueSettings, worker_name: str) -> None:
        self.conf = conf
        self.worker_name = worker_name
        self.waiting: dict[int, tuple[InHand, Outcome]] = {}  # job id: decided, not yet written
        self.since = 0.0  # monotonic time the oldest waiting outcome was decided
        self.recorded = 0  # attempts that ended here, written or not

    def record(self, job: InHand, report: Report) -> None:
        """Decide what ``report`` means for ``job``; it is written with the next ack."""
        if not self.waiting:
            self.since = time.monotonic()
        self.waiting[job.assignment.job_id] = (job, self._decide(job, report))
        if report.kind == "late":
            return  # never started: no attempt ended (jobqueue/scheduling/limits.py)
        telemetry.attempt_finished(job, report, self.waiting[job.assignment.job_id][1])
        self.recorded += 1

    def record_cancelled_before_start(self, job: InHand) -> None:
        """A buffered job whose cancel was requested before a child began it."""
        error = error_of(JobCancelled, "cancelled before it started")
        self.record(job, Report(job_id=job.assignment.job_id, kind="cancelled", error=error))

    def _decide(self, job: InHand, report: Report) -> Outcome:
        a = job.assignment
        return decide(
            report,
            token=a.token,
            attempts=a.attempts,
            max_attempts=job.max_attempts,
            now=datetime.now(UTC),
            retry_delay=(
                retry_delay(a.attempts, base=self.conf.BACKOFF_BASE, cap=self.conf.BACKOFF_MAX)
                if report.kind == "failed"
                else 0.0
            ),
            worker=self.worker_name,
        )

    def due(self, now: float, *, idle: bool, stopping: bool) -> bool:
        """Whether to write now: a full batch, the oldest waited long enough, or nothing runs."""
        if not self.waiting:
            return False
        return len(self.waiting) >= ACK_BATCH or now - self.since >= ACK_DELAY or stopping or idle

    def next_due(self) -> float | None:
        return self.since + ACK_DELAY if self.waiting else None

    def held(self) -> list[tuple[int, int]]:
        """(id, token) of the jobs whose outcome waits: still running, and ours, in the database."""
        return [job.key for job, _ in self.waiting.values()]

    def send(self, cursor: psycopg.Cursor, worker: int) -> list[int]:
        """Send an ack of every waiting outcome on ``cursor`` (maybe in a pipeline).

        Returns the ids sent; pass them to ``written`` once the ack has committed.
        """
        rows = [outcome.as_row() for _, outcome in self.waiting.values()]
        queries.ack(cursor, worker=worker, worker_name=self.worker_name, outcomes=rows)
        return list(self.waiting)

    def written(self, sent: list[int], acked: set[int]) -> None:
        """Forget the outcomes of ``sent`` once committed; say which the fence turned away."""
        for job_id in sent:
            job, _ = self.waiting.pop(job_id)
            if job_id not in acked:
                _warn_fenced_out(job)

    def write_one_by_one(self, db: psycopg.Connection, worker: int) -> None:
        """After the database refused a batch for its data: write each outcome on its own.

        An outcome the database refuses (a result or error it cannot store)
        becomes that attempt's failure, so only its job is affected. If even
        that is refused, the outcome is dropped and the lease rescues the job.
        """
        for job_id in list(self.waiting):
            job, outcome = self.waiting[job_id]
            try:
                written = self._write_single(db, worker, outcome)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as e:
                logger.error("job %s: the database refused its outcome: %s", job_id, e)
                refused = Report(
                    job_id=job_id,
                    kind="failed",
                    error=error_of(
                        UnstorableResult,
                        "the database refused this attempt's outcome: "
                        + str(e).encode("ascii", "replace").decode()[:1000],
                    ),
                    started_at=None,
                )
                try:
                    written = self._write_single(db, worker, self._decide(job, refused))
                except psycopg.OperationalError:
                    raise
                except psycopg.Error:
                    logger.exception("job %s: outcome dropped; its lease will rescue it", job_id)
                    written = True
            del self.waiting[job_id]
            if not written:
                _warn_fenced_out(job)

    def _write_single(self, db: psycopg.Connection, worker: int, outcome: Outcome) -> bool:
        """Ack one outcome in a transaction of its own; whether it was written."""
        with db.cursor() as cur:
            queries.ack(
                cur, worker=worker, worker_name=self.worker_name, outcomes=[outcome.as_row()]
            )
            return outcome.job_id in queries.acked(cur)


def _warn_fenced_out(job: InHand) -> None:
    logger.warning(
        "job %s: attempt %d's outcome dropped: the job was taken from this worker "
        "(rescued after its lease ran out) before it was written",
        job.assignment.job_id,
        job.assignment.attempts,
    )
