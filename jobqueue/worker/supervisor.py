"""The supervisor: the loop that ties the worker's roles together.

It is single-threaded around one ``selectors`` loop that wakes on a child's
report, a child's socket ready to take more, a NOTIFY from the database, a
signal, or the next timer (poll, heartbeat, rescue, ack, a job's deadline, the
fence). The roles live in their own modules: the dispatcher (dispatch.py)
decides what to claim and which child runs what, the lease keeper (lease.py)
heart-beats, rescues and fences, the outcome recorder (recorder.py) writes
fenced acks in batches. This module owns the processes and the one
autocommit psycopg connection: if it is lost the children keep running (until
the fence falls), their reports wait, and the supervisor reconnects with backoff.
"""

import logging
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType

import psycopg
from django.db import connections

from jobqueue import queries
from jobqueue.conf import get_settings
from jobqueue.db import connect
from jobqueue.worker.children import Child, InHand, start_child
from jobqueue.worker.dispatch import Dispatcher
from jobqueue.worker.fence import LeaseFence
from jobqueue.worker.lease import Beat, LeaseKeeper
from jobqueue.worker.outcome import Report
from jobqueue.worker.recorder import OutcomeRecorder

logger = logging.getLogger("jobqueue.worker")

_READ = selectors.EVENT_READ
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE


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
        self.fence = LeaseFence()
        self.lease = LeaseKeeper(self.conf, self.fence)
        self.dispatcher = Dispatcher(options.concurrency)
        self.recorder = OutcomeRecorder(self.conf, self.name)
        self.stopping_at: float | None = None  # monotonic deadline once asked to stop
        self.claim_wanted = True
        self.drained = False  # burst: the last claim found nothing ready
        now = time.monotonic()
        self.next_poll = now
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

    def _busy(self) -> bool:
        return any(c.jobs for c in self.children) or bool(self.dispatcher.buffer)

    def _finished(self) -> bool:
        busy = self._busy()
        if self.stopping_at is None and self.options.burst and self.drained and not busy:
            self._request_stop("burst: queue drained")
        if (
            self.stopping_at is None
            and self.options.max_jobs is not None
            and self.recorder.recorded >= self.options.max_jobs
        ):
            self._request_stop(f"processed {self.recorder.recorded} jobs (--max-jobs)")
        if self.stopping_at is None:
            return False
        return (not busy and not self.recorder.waiting) or time.monotonic() >= self.stopping_at

    # ------------------------------------------------------------ signals
    def _install_signals(self) -> None:
        self.wakeup_r.setblocking(False)
        self.wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self.wakeup_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self.wakeup_r, _READ, "signal")
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
        if self.db is not None and (self._ack_due(now) or (self.claim_wanted and self._demand())):
            timeout = 0.0  # work for the database now; never while there is no connection
        for key, events in self.selector.select(timeout):
            if key.data == "signal":
                try:
                    while self.wakeup_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            elif key.data == "db":
                self.claim_wanted = True  # a NOTIFY arrived; _db_step reads it
            else:
                if events & selectors.EVENT_WRITE:
                    self._flush(key.data)
                if events & selectors.EVENT_READ:
                    self._on_child_readable(key.data)

    def _next_timer(self) -> float:
        timers = [self.lease.next_heartbeat, self.lease.next_rescue]
        ack = self.recorder.next_due()
        if ack is not None:
            timers.append(ack)
        timers.append(self.next_poll if self.db else self.reconnect_at)
        if self.stopping_at is not None:
            timers.append(self.stopping_at)
        busy = [c.job for c in self.children if c.job is not None and c.kill_reason is None]
        timers.extend(self._deadline(job) for job in busy)
        if busy:
            timers.append(self.fence.until)
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
        child = start_child(self.children, self.name, self.fence)
        self.children.append(child)
        self.selector.register(child.channel, _READ, child)

    def _dispatch(self) -> None:
        """Hand buffered jobs to children, unless the fence has fallen (see fence.py)."""
        if self.dispatcher.buffer and not self.lease.expired(time.monotonic()):
            self.dispatcher.dispatch(self.children)
        for child in self.children:
            if child.channel.unsent:
                self._flush(child)

    def _flush(self, child: Child) -> None:
        """Write what a child's socket takes of what waits for it; watch it while any is left."""
        try:
            done = child.channel.flush()
        except OSError:
            done = True  # the child died; its socket reads EOF and its death is handled there
        self.selector.modify(child.channel, _READ if done else _READ_WRITE, child)

    def _on_child_readable(self, child: Child) -> None:
        reports = child.read()
        if reports is None:
            self._on_child_death(child)
            return
        self._on_reports(child, reports)

    def _on_reports(self, child: Child, reports: list[Report]) -> None:
        for report in reports:
            if child.job is None or report.job_id != child.job.assignment.job_id:
                logger.error("child reported job %s it was not running", report.job_id)
                continue
            job = child.finish_first()
            self.dispatcher.learn(job.assignment.task, report.duration)
            if not job.lost:
                self.recorder.record(job, report)

    def _on_child_death(self, child: Child) -> None:
        self.selector.unregister(child.channel)
        child.channel.close()
        self.children.remove(child)
        job = child.finish_first() if child.jobs else None
        for waiting in reversed(child.jobs):  # sent but never begun: another child runs them
            if not waiting.lost:
                waiting.began_at = 0.0
                self.dispatcher.buffer.appendleft(waiting)
        if job is not None and not job.lost:
            report = child.death_report(job, cancel_grace=self.conf.CANCEL_GRACE)
            logger.warning("job %s: %s", job.assignment.job_id, report.error["message"])  # type: ignore[index]
            self.recorder.record(job, report)
        elif job is None and self.stopping_at is None:
            logger.warning("idle child died: %s", child.death_note())
        if self.stopping_at is None:
            self._add_child()

    def _enforce_deadlines(self) -> None:
        """Kill the child of a job past its timeout or cancel grace, or of any job once the
        fence has fallen (the lease could run out before the next heartbeat succeeds)."""
        now = time.monotonic()
        fenced = self.lease.expired(now)
        for child in self.children:
            job = child.job
            if job is None or child.kill_reason is not None:
                continue
            if fenced:
                logger.error(
                    "job %s: no heartbeat succeeded for %.1f s; stopping it before its lease "
                    "(%g s) can run out",
                    job.assignment.job_id,
                    now - (self.fence.until - self.conf.LEASE + self.lease.margin),
                    self.conf.LEASE,
                )
                child.kill("fenced", job.assignment.job_id)
            elif now >= self._deadline(job):
                reason = "cancel" if job.cancel_seen_at is not None else "timeout"
                logger.warning("job %s: killing its child (%s)", job.assignment.job_id, reason)
                child.kill(reason, job.assignment.job_id)

    # ----------------------------------------------------------- database
    def _db_step(self) -> None:
        now = time.monotonic()
        if self.db is None and (now < self.reconnect_at or not self._connect()):
            return
        try:
            if now >= self.lease.next_heartbeat:
                self._heartbeat()
            if now >= self.lease.next_rescue:
                with self._cursor() as cur:
                    self.lease.rescue(cur)
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
            # A lock or a stuck statement must not hold the heartbeat up past the
            # lease: the statement fails, the connection is dropped and made again.
            lock_timeout = max(0.2, min(2.0, self.conf.LEASE / 10))
            statement_timeout = max(5.0, self.conf.LEASE / 2)
            self.db.execute(f"SET lock_timeout = '{lock_timeout * 1000:.0f}ms'")
            self.db.execute(f"SET statement_timeout = '{statement_timeout * 1000:.0f}ms'")
            self.db.execute(f"LISTEN {queries.QUEUE_CHANNEL}")
            with self.db.cursor() as cur:
                if self.worker_id is None:
                    self._register(cur)
                else:
                    self._give_back_unknown(cur)
        except psycopg.OperationalError as e:
            self._lost_connection(e)
            return False
        self.db_fd = self.db.fileno()
        self.selector.register(self.db_fd, _READ, "db")
        self.reconnect_delay = 0.5
        self.claim_wanted = True
        self.lease.connected(time.monotonic())
        logger.info("worker %s connected as worker #%s", self.name, self.worker_id)
        return True

    def _register(self, cur: psycopg.Cursor) -> None:
        self.worker_id = queries.register_worker(
            cur,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=self.options.queues,
            concurrency=self.options.concurrency,
        )

    def _in_hand(self) -> list[InHand]:
        jobs = [j for c in self.children for j in c.jobs] + list(self.dispatcher.buffer)
        return [j for j in jobs if not j.lost]

    def _held(self) -> list[tuple[int, int]]:
        """(id, token) of every job this worker holds in the database."""
        return [j.key for j in self._in_hand()] + self.recorder.held()

    def _give_back_unknown(self, cur: psycopg.Cursor) -> None:
        """Re-queue jobs claimed for this worker whose claim was cut off with the connection."""
        known = [token for _, token in self._held()]
        ids = queries.give_back_unknown(cur, worker=self._worker(), known_tokens=known)
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
        # At most a quarter of the lease: after an outage, other workers wait one lease
        # before they rescue, and this one must be back in time to renew its jobs.
        self.reconnect_delay = min(self.conf.LEASE / 4, self.reconnect_delay * 2)

    def _cursor(self) -> psycopg.Cursor:
        assert self.db is not None
        return self.db.cursor()

    def _ack_due(self, now: float) -> bool:
        idle = not any(c.jobs for c in self.children)
        return self.recorder.due(now, idle=idle, stopping=self.stopping_at is not None)

    def _demand(self) -> int:
        if self.stopping_at is not None:
            return 0
        limit = self.options.max_jobs
        return self.dispatcher.demand(self.children, limit=limit)

    def _ack_and_claim(self, *, ack: bool, claim: bool) -> None:
        """Write the waiting outcomes and claim more jobs, in one round trip.

        Both statements travel in one pipeline and commit together at its end;
        outcomes are dropped from memory, and claimed jobs handed out, only
        once that commit has succeeded. If the database refuses the ack for its
        data, the outcomes are written one by one and the claim waits a turn.
        """
        assert self.db is not None
        demand = self._demand() if claim else 0
        if claim:
            self.next_poll = time.monotonic() + self.conf.POLL_INTERVAL
        if not ack and not demand:
            return
        sent: list[int] = []
        try:
            with self.db.cursor() as ack_cur, self.db.cursor() as claim_cur:
                with self.db.pipeline():
                    if ack:
                        sent = self.recorder.send(ack_cur, self._worker())
                    if demand:
                        queries.claim(
                            claim_cur,
                            worker=self._worker(),
                            demand=demand,
                            queues=self.options.queues,
                        )
                if sent:
                    self.recorder.written(sent, queries.acked(ack_cur))
                if demand:
                    taken = self.dispatcher.take(queries.claimed(claim_cur))
                    self.claim_wanted = taken == demand  # a full batch: more are likely ready
                    self.drained = not taken
        except psycopg.OperationalError:
            raise
        except psycopg.Error as e:
            if not sent:
                raise
            logger.error("the database refused a batch of outcomes (%s); writing one by one", e)
            self.recorder.write_one_by_one(self.db, self._worker())

    def _heartbeat(self) -> None:
        with self._cursor() as cur:
            beat = self.lease.beat(cur, worker=self._worker(), jobs=self._held())
            if not beat.alive:
                logger.error(
                    "worker row %s vanished (deleted, or purged as lost); registering again",
                    self.worker_id,
                )
                self._register(cur)
                beat = self.lease.beat(cur, worker=self._worker(), jobs=self._held())
        self._on_beat(beat)

    def _on_beat(self, beat: Beat) -> None:
        """Stop what is no longer ours; note what was asked to cancel."""
        now = time.monotonic()
        for child in self.children:
            for job in child.jobs:
                if job.assignment.job_id not in beat.held:
                    job.lost = True
            lost = [j for j in child.jobs if j.lost]
            if lost and child.kill_reason is None:
                # A child runs what it was sent in order, so one holding a job that is
                # no longer ours is stopped, whichever job it is running.
                current = child.jobs[0]
                logger.error(
                    "jobs %s were taken from this worker (rescued); stopping their child",
                    [j.assignment.job_id for j in lost],
                )
                child.kill("taken", current.assignment.job_id if current.lost else None)
            running = child.job
            if running and running.assignment.job_id in beat.cancel and not running.cancel_seen_at:
                running.cancel_seen_at = now
        held_or_cancelled = set(beat.held) - beat.cancel
        gone = {j.assignment.job_id for j in self.dispatcher.buffer} - held_or_cancelled
        for job in self.dispatcher.drop(gone):
            if job.assignment.job_id in beat.cancel:
                self.recorder.record(
                    job,
                    Report(
                        job_id=job.assignment.job_id,
                        kind="cancelled",
                        error={
                            "type": "jobqueue.exceptions.JobCancelled",
                            "message": "cancelled before it started",
                            "traceback": "",
                        },
                    ),
                )

    def _read_notifications(self) -> None:
        assert self.db is not None
        for note in self.db.notifies(timeout=0):
            if not self.options.queues or note.payload in self.options.queues:
                self.claim_wanted = True

    def _worker(self) -> int:
        assert self.worker_id is not None
        return self.worker_id

    # ----------------------------------------------------------- shutdown
    def _shutdown(self) -> None:
        """Read what children reported, kill what did not finish in time, give back every
        job not done, write the outcomes, deregister. Never raises a database error: what
        cannot be written is left to the lease."""
        for child in list(self.children):
            self._drain(child)  # a job that finished at the deadline is not run again
        for child in self.children:
            if child.jobs:
                child.kill("shutdown", None)
            else:
                child.stop()
        for child in self.children:
            child.process.join(timeout=5)
            self._drain(child)
        unfinished = [j.key for j in self._in_hand()]
        if self.db is None:
            self._connect_for_shutdown()
        if self.db is not None and self.worker_id is not None:
            try:
                if self.recorder.waiting:
                    with self._cursor() as cur:
                        sent = self.recorder.send(cur, self.worker_id)
                        self.recorder.written(sent, queries.acked(cur))
                with self._cursor() as cur:
                    queries.give_back(cur, worker_name=self.name, jobs=unfinished)
                    queries.unregister_worker(cur, worker=self.worker_id)
            except psycopg.Error as e:
                logger.error("could not record shutdown (%s): the lease will rescue the jobs", e)
            self.db.close()
        if unfinished:
            logger.warning(
                "gave back %d unfinished jobs: %s", len(unfinished), [i for i, _ in unfinished]
            )
        logger.info("worker %s stopped after %d jobs", self.name, self.recorder.recorded)

    def _drain(self, child: Child) -> None:
        """Record every report a child has written so far, without waiting for more."""
        while (reports := child.read()) is not None and reports:
            self._on_reports(child, reports)

    def _connect_for_shutdown(self) -> None:
        try:
            self.db = connect()
        except psycopg.OperationalError:
            self.db = None
