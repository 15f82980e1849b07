"""The supervisor: one process that claims jobs, hands them to children, and records outcomes.

It is single-threaded around one ``selectors`` loop that wakes on a child's
report, a NOTIFY from the database, a signal, or the next timer (poll,
heartbeat, rescue, a job's deadline). All database work goes through one
autocommit psycopg connection; if that connection is lost the children keep
running, their reports wait, and the supervisor reconnects with backoff.
"""

import logging
import os
import selectors
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

import psycopg
from django.db import connections

from jobqueue import queries
from jobqueue.conf import get_settings
from jobqueue.db import connect
from jobqueue.exceptions import ChildCrashed, JobTimeout
from jobqueue.worker.backoff import retry_delay
from jobqueue.worker.children import Child, InHand, start_child
from jobqueue.worker.executor import Assignment
from jobqueue.worker.outcome import Outcome, Report, decide

logger = logging.getLogger("jobqueue.worker")

# How much work, in seconds of recent mean run time, to keep claimed ahead of
# the children. Short jobs get a buffer so that claiming is amortised; jobs
# of a second or more get none, so that no job waits here while another
# worker sits idle.
BUFFER_SECONDS = 0.05
MAX_BUFFER_PER_CHILD = 100
# Outcomes are written in batches: when this many are waiting, when the
# oldest has waited ACK_DELAY seconds, or at once when nothing else is running.
# An outcome is never visible before it is committed; batching only delays it.
ACK_BATCH = 64
ACK_DELAY = 0.01
# Work sent ahead to one child, in seconds of its tasks' mean run times: enough
# short jobs to cover a database round trip of the supervisor on a busy
# machine. A job of a task not yet seen, or of a task that takes longer, goes
# only to an idle child, and nothing is queued behind it.
PIPELINE_SECONDS = 0.02
UNSEEN_TASK_SECONDS = 1.0
MAX_PIPELINE = 64
# Bytes of arguments a busy child may hold unread on its socket: well under the
# socket's buffer, so that sending to a child never blocks the supervisor.
PIPELINE_BYTES = 64 * 1024
RECONNECT_MAX_DELAY = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    queues: tuple[str, ...] = ()  # empty: every queue
    concurrency: int = 1
    burst: bool = False  # drain what is ready, then exit
    max_jobs: int | None = None  # exit after this many jobs
    shutdown_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {self.max_jobs}")
        if self.shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must not be negative, got {self.shutdown_timeout}")


class Supervisor:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.conf = get_settings()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.worker_id: int | None = None
        self.db: psycopg.Connection | None = None
        self.db_fd: int | None = None  # the connection's socket, as registered with the selector
        self.children: list[Child] = []
        self.buffer: deque[InHand] = deque()  # claimed, waiting for an idle child
        self.outcomes: list[Outcome] = []  # decided, waiting to be written
        self.outcomes_since = 0.0  # monotonic time the oldest waiting outcome was decided
        self.processed = 0
        self.claimed = 0
        self.mean_duration = 1.0  # seconds; assume long jobs until shown otherwise
        self.task_durations: dict[str, float] = {}  # task path: mean seconds per job
        self.stopping_at: float | None = None  # monotonic deadline once asked to stop
        self.claim_wanted = True
        self.drained = False  # burst: the last claim found nothing ready
        now = time.monotonic()
        self.next_poll = now
        self.next_heartbeat = now
        self.next_rescue = now
        self.reconnect_at = now
        self.reconnect_delay = 0.5
        self.selector = selectors.DefaultSelector()
        self.wakeup_r, self.wakeup_w = socket.socketpair()

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        """Serve until asked to stop (or drained, in burst mode); returns the exit code."""
        self._install_signals()
        connections.close_all()  # children must not inherit Django's connections
        for _ in range(self.options.concurrency):
            self._add_child()
        logger.info(
            "worker %s started: queues=%s concurrency=%d",
            self.name,
            ",".join(self.options.queues) or "*",
            self.options.concurrency,
        )
        try:
            while not self._finished():
                self._wait()
                self._dispatch()
                self._db_step()
                self._dispatch()
                self._enforce_deadlines()
        finally:
            self._shutdown()
        return 0

    def _finished(self) -> bool:
        busy = any(c.jobs for c in self.children) or self.buffer
        if self.stopping_at is None and self.options.burst and self.drained and not busy:
            self._request_stop("burst: queue drained")
        if (
            self.stopping_at is None
            and self.options.max_jobs is not None
            and self.processed >= self.options.max_jobs
        ):
            self._request_stop(f"processed {self.processed} jobs (--max-jobs)")
        if self.stopping_at is None:
            return False
        return (not busy and not self.outcomes) or time.monotonic() >= self.stopping_at

    # ------------------------------------------------------------ signals
    def _install_signals(self) -> None:
        self.wakeup_r.setblocking(False)
        self.wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self.wakeup_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "signal")
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping_at is not None:
            logger.warning("second %s: stopping now", signal.Signals(signum).name)
            self.stopping_at = time.monotonic()
        else:
            self._request_stop(f"got {signal.Signals(signum).name}")

    def _request_stop(self, why: str) -> None:
        logger.info(
            "worker %s stopping (%s): finishing %d running jobs within %.0f s",
            self.name,
            why,
            sum(len(c.jobs) for c in self.children),
            self.options.shutdown_timeout,
        )
        self.stopping_at = time.monotonic() + self.options.shutdown_timeout

    # ------------------------------------------------------------ waiting
    def _wait(self) -> None:
        now = time.monotonic()
        timeout = max(0.0, self._next_timer() - now)
        if self._ack_due(now) or (self.claim_wanted and self._demand() and self.db):
            timeout = 0.0
        for key, _ in self.selector.select(timeout):
            if key.data == "signal":
                try:
                    while self.wakeup_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            elif key.data == "db":
                self.claim_wanted = True  # a NOTIFY arrived; _db_step reads it
            else:
                self._on_child_readable(key.data)

    def _next_timer(self) -> float:
        timers = [self.next_heartbeat, self.next_rescue]
        if self.outcomes:
            timers.append(self.outcomes_since + ACK_DELAY)
        timers.append(self.next_poll if self.db else self.reconnect_at)
        if self.stopping_at is not None:
            timers.append(self.stopping_at)
        for child in self.children:
            if child.job is not None:
                timers.append(self._deadline(child.job))
        return min(timers)

    def _deadline(self, job: InHand) -> float:
        grace = self.conf.CANCEL_GRACE
        deadline = float("inf")
        if job.assignment.timeout:
            deadline = job.began_at + job.assignment.timeout + grace
        if job.cancel_seen_at is not None:
            deadline = min(deadline, job.cancel_seen_at + grace)
        return deadline

    # ----------------------------------------------------------- children
    def _add_child(self) -> None:
        child = start_child(self.children, self.name)
        self.children.append(child)
        self.selector.register(child.channel, selectors.EVENT_READ, child)

    def _on_child_readable(self, child: Child) -> None:
        reports = child.read()
        if reports is None:
            self._on_child_death(child)
            return
        for report in reports:
            if child.job is None or report.job_id != child.job.assignment.job_id:
                logger.error("child reported job %s it was not running", report.job_id)
                continue
            job = child.finish_first()
            self.mean_duration = 0.8 * self.mean_duration + 0.2 * report.duration
            task = job.assignment.task
            known = self.task_durations.get(task, report.duration)
            self.task_durations[task] = 0.8 * known + 0.2 * report.duration
            self._record(job, report)

    def _on_child_death(self, child: Child) -> None:
        self.selector.unregister(child.channel)
        child.channel.close()
        self.children.remove(child)
        note = child.death_note()
        job = child.finish_first() if child.jobs else None
        for waiting in reversed(child.jobs):  # sent but never begun: another child runs them
            waiting.began_at = 0.0
            self.buffer.appendleft(waiting)
        if job is not None:
            if child.kill_reason == "cancel":
                report = Report(
                    job_id=job.assignment.job_id,
                    kind="cancelled",
                    error=_error(
                        "jobqueue.exceptions.JobCancelled",
                        "cancelled: stopped after ignoring the request for "
                        f"{self.conf.CANCEL_GRACE:g} s",
                    ),
                )
            elif child.kill_reason == "timeout":
                report = Report(
                    job_id=job.assignment.job_id,
                    kind="failed",
                    error=_error(
                        f"{JobTimeout.__module__}.{JobTimeout.__qualname__}",
                        f"ran past its timeout of {job.assignment.timeout:g} s and was killed",
                    ),
                )
            else:
                report = Report(
                    job_id=job.assignment.job_id,
                    kind="failed",
                    error=_error(f"{ChildCrashed.__module__}.{ChildCrashed.__qualname__}", note),
                )
            logger.warning("job %s: %s", job.assignment.job_id, report.error["message"])  # type: ignore[index]
            self._record(job, report)
        elif self.stopping_at is None:
            logger.warning("idle child died: %s", note)
        if self.stopping_at is None:
            self._add_child()

    def _record(self, job: InHand, report: Report) -> None:
        a = job.assignment
        outcome = decide(
            report,
            attempts=a.attempts,
            max_attempts=job.max_attempts,
            now=datetime.now(UTC),
            retry_delay=(
                retry_delay(a.attempts, base=self.conf.BACKOFF_BASE, cap=self.conf.BACKOFF_MAX)
                if report.kind == "failed"
                else 0.0
            ),
            worker=self.name,
        )
        if not self.outcomes:
            self.outcomes_since = time.monotonic()
        self.outcomes.append(outcome)
        self.processed += 1

    def _dispatch(self) -> None:
        """Share buffered jobs among the children with the fewest in hand, one message each.

        An idle child takes the next job whatever it is. A busy one takes more
        only while all it holds is expected to take under PIPELINE_SECONDS, and
        while the arguments waiting at it stay under PIPELINE_BYTES.
        """
        if not self.buffer:
            return
        # child index: (jobs in hand, seconds of work expected, bytes it may still take)
        room: dict[int, tuple[int, float, int | None]] = {}
        for i, child in enumerate(self.children):
            if child.kill_reason is None and len(child.jobs) < MAX_PIPELINE:
                expected = sum(self._expected(job) for job in child.jobs)
                room[i] = (len(child.jobs), expected, child.free_bytes(PIPELINE_BYTES))
        batches: dict[int, list[InHand]] = {}
        while self.buffer and room:
            i = min(room, key=lambda k: room[k][0])
            in_hand, expected, free_bytes = room.pop(i)
            job = self.buffer[0]
            cost, size = self._expected(job), job.assignment.size
            if in_hand and (
                expected + cost > PIPELINE_SECONDS or (free_bytes is not None and size > free_bytes)
            ):
                continue  # this child is full until it finishes what it has
            batches.setdefault(i, []).append(self.buffer.popleft())
            if in_hand + 1 < MAX_PIPELINE:
                left = None if free_bytes is None else free_bytes - size
                room[i] = (in_hand + 1, expected + cost, left)
        for i, batch in batches.items():
            try:
                self.children[i].assign(batch)
            except OSError:  # the child died; its death is handled when its socket reads EOF
                self.buffer.extendleft(reversed(batch))

    def _expected(self, job: InHand) -> float:
        """Seconds ``job`` is expected to run: its task's mean so far."""
        return self.task_durations.get(job.assignment.task, UNSEEN_TASK_SECONDS)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for child in self.children:
            job = child.job
            if job is None or child.kill_reason is not None or now < self._deadline(job):
                continue
            reason = "cancel" if job.cancel_seen_at is not None else "timeout"
            logger.warning("job %s: killing its child (%s)", job.assignment.job_id, reason)
            child.kill(reason)

    # ----------------------------------------------------------- database
    def _db_step(self) -> None:
        now = time.monotonic()
        if self.db is None:
            if now < self.reconnect_at:
                return
            if not self._connect():
                return
        try:
            if now >= self.next_heartbeat:
                self._heartbeat()
            if now >= self.next_rescue:
                self._rescue()
            ack = self._ack_due(now)
            claim = self.claim_wanted or now >= self.next_poll
            if ack or claim:
                self._ack_and_claim(ack=ack, claim=claim)
            self._read_notifications()  # also those that arrived during the statements above
        except psycopg.OperationalError as e:
            self._lost_connection(e)

    def _connect(self) -> bool:
        try:
            self.db = connect()
            self.db.execute(f"LISTEN {queries.QUEUE_CHANNEL}")
            with self.db.cursor() as cur:
                if self.worker_id is None or not queries.heartbeat(cur, worker=self.worker_id)[0]:
                    self.worker_id = queries.register_worker(
                        cur,
                        hostname=socket.gethostname(),
                        pid=os.getpid(),
                        queues=self.options.queues,
                        concurrency=self.options.concurrency,
                    )
                else:
                    self._give_back_unknown(cur)
        except psycopg.OperationalError as e:
            self._lost_connection(e)
            return False
        self.db_fd = self.db.fileno()
        self.selector.register(self.db_fd, selectors.EVENT_READ, "db")
        self.reconnect_delay = 0.5
        self.claim_wanted = True
        logger.info("worker %s connected as worker #%s", self.name, self.worker_id)
        return True

    def _give_back_unknown(self, cur: psycopg.Cursor) -> None:
        """Re-queue jobs claimed for this worker whose claim was cut off with the connection."""
        known = [j.assignment.job_id for c in self.children for j in c.jobs]
        known += [j.assignment.job_id for j in self.buffer]
        known += [o.job_id for o in self.outcomes]
        ids = queries.give_back_unknown(cur, worker=self._worker(), known=known)
        if ids:
            logger.warning("gave back %d jobs whose claim was lost with the connection", len(ids))

    def _lost_connection(self, error: Exception) -> None:
        logger.warning(
            "database connection lost (%s); retrying in %.1f s",
            str(error).strip(),
            self.reconnect_delay,
        )
        if self.db_fd is not None:
            self.selector.unregister(self.db_fd)
            self.db_fd = None
        if self.db is not None:
            self.db.close()
            self.db = None
        self.reconnect_at = time.monotonic() + self.reconnect_delay
        self.reconnect_delay = min(RECONNECT_MAX_DELAY, self.reconnect_delay * 2)

    def _cursor(self) -> psycopg.Cursor:
        assert self.db is not None
        return self.db.cursor()

    def _ack_due(self, now: float) -> bool:
        if not self.outcomes:
            return False
        return (
            len(self.outcomes) >= ACK_BATCH
            or now - self.outcomes_since >= ACK_DELAY
            or self.stopping_at is not None
            or not any(c.jobs for c in self.children)
        )

    def _ack_and_claim(self, *, ack: bool, claim: bool) -> None:
        """Write the waiting outcomes and claim more jobs, in one round trip.

        Both statements travel in one pipeline and commit together at its end;
        outcomes are dropped from memory, and claimed jobs handed out, only
        once that commit has succeeded.
        """
        assert self.db is not None
        outcomes = len(self.outcomes) if ack else 0
        demand = self._demand() if claim else 0
        if claim:
            self.next_poll = time.monotonic() + self.conf.POLL_INTERVAL
        if not outcomes and not demand:
            return
        rows: list[tuple] = []
        with self.db.pipeline(), self.db.cursor() as cur:
            if outcomes:
                written = [o.as_row() for o in self.outcomes[:outcomes]]
                queries.ack(cur, worker=self._worker(), outcomes=written)
            if demand:
                rows = queries.claim(
                    cur, worker=self._worker(), demand=demand, queues=self.options.queues
                )
        del self.outcomes[:outcomes]
        if demand:
            self._take(rows, demand)

    def _heartbeat(self) -> None:
        with self._cursor() as cur:
            alive, cancel_ids = queries.heartbeat(cur, worker=self._worker())
        if not alive:
            logger.error(
                "worker row %s vanished (declared lost); registering again", self.worker_id
            )
            self.worker_id = None
            self._lost_connection(RuntimeError("worker row vanished"))
            return
        self._note_cancellations(set(cancel_ids))
        self.next_heartbeat = time.monotonic() + self.conf.HEARTBEAT_INTERVAL

    def _note_cancellations(self, ids: set[int]) -> None:
        now = time.monotonic()
        for child in self.children:
            if (
                child.job
                and child.job.assignment.job_id in ids
                and child.job.cancel_seen_at is None
            ):
                child.job.cancel_seen_at = now
        for job in [j for j in self.buffer if j.assignment.job_id in ids]:
            self.buffer.remove(job)
            self._record(
                job,
                Report(
                    job_id=job.assignment.job_id,
                    kind="cancelled",
                    error=_error("jobqueue.exceptions.JobCancelled", "cancelled before it started"),
                ),
            )

    def _rescue(self) -> None:
        with self._cursor() as cur:
            rescued = queries.rescue(cur, lease=self.conf.LEASE)
            if any(status == "queued" for _, status, _ in rescued):
                queries.notify_queues(
                    cur, [queue for _, status, queue in rescued if status == "queued"]
                )
        for job_id, status, _ in rescued:
            logger.warning("rescued job %s from a lost worker: now %s", job_id, status)
        self.next_rescue = time.monotonic() + max(self.conf.HEARTBEAT_INTERVAL, self.conf.LEASE / 4)

    def _read_notifications(self) -> None:
        assert self.db is not None
        for note in self.db.notifies(timeout=0):
            if not self.options.queues or note.payload in self.options.queues:
                self.claim_wanted = True

    def _demand(self) -> int:
        """How many jobs to claim now: free children, plus a buffer sized for short jobs.

        The buffer is refilled only once it is half empty, so that short jobs
        are claimed in large batches rather than one statement per job.
        """
        if self.stopping_at is not None:
            return 0
        n = self.options.concurrency
        target = min(MAX_BUFFER_PER_CHILD * n, int(BUFFER_SECONDS / max(self.mean_duration, 1e-4)))
        in_hand = sum(len(c.jobs) for c in self.children) + len(self.buffer)
        if self.buffer and len(self.buffer) > target // 2:
            return 0
        demand = n + target - in_hand
        if self.options.max_jobs is not None:
            demand = min(demand, self.options.max_jobs - self.claimed)
        return max(0, demand)

    def _take(self, rows: list[tuple], demand: int) -> None:
        """Buffer freshly claimed jobs for the children."""
        for (
            job_id,
            task,
            args_json,
            kwargs_json,
            attempts,
            max_attempts,
            timeout,
            *_,
            queue,
        ) in rows:
            self.buffer.append(
                InHand(
                    assignment=Assignment(job_id, task, args_json, kwargs_json, attempts, timeout),
                    max_attempts=max_attempts,
                    queue=queue,
                )
            )
        self.claimed += len(rows)
        self.claim_wanted = len(rows) == demand  # a full batch: more are likely ready
        self.drained = not rows

    def _worker(self) -> int:
        assert self.worker_id is not None
        return self.worker_id

    # ----------------------------------------------------------- shutdown
    def _shutdown(self) -> None:
        """Kill what did not finish in time, give back every job not done, deregister."""
        for child in self.children:
            if child.jobs:
                child.kill("shutdown")
            else:
                child.stop()
        unfinished = [j.assignment.job_id for c in self.children for j in c.jobs]
        unfinished += [j.assignment.job_id for j in self.buffer]
        for child in self.children:
            child.process.join(timeout=5)
        if self.db is None:
            self._connect_for_shutdown()
        if self.db is not None and self.worker_id is not None:
            try:
                with self._cursor() as cur:
                    if self.outcomes:
                        queries.ack(
                            cur, worker=self.worker_id, outcomes=[o.as_row() for o in self.outcomes]
                        )
                    queries.give_back(cur, worker=self.worker_id, ids=unfinished)
                    queries.unregister_worker(cur, worker=self.worker_id)
            except psycopg.OperationalError as e:
                logger.error("could not record shutdown (%s): the lease will rescue the jobs", e)
            self.db.close()
        if unfinished:
            logger.warning("gave back %d unfinished jobs: %s", len(unfinished), unfinished)
        logger.info("worker %s stopped after %d jobs", self.name, self.processed)

    def _connect_for_shutdown(self) -> None:
        try:
            self.db = connect()
        except psycopg.OperationalError:
            self.db = None


def _error(type_path: str, message: str) -> dict[str, str]:
    return {"type": type_path, "message": message, "traceback": ""}
