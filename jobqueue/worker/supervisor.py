"""The supervisor: the loop that ties the worker's roles together.

It is single-threaded around one ``selectors`` loop that wakes on a child's
report, a child's socket ready to take more, a NOTIFY from the database, a
signal, or the next timer (poll, heartbeat, rescue, ack, a job's deadline, the
fence). The roles live in their own modules:

- the dispatcher (dispatch.py) decides what to claim and which child runs what;
- the child pool (pool.py) feeds, reads, reaps and stops the children;
- the lease keeper (lease.py) heart-beats, rescues and fences (fence.py);
- the outcome recorder (recorder.py) writes fenced acks in batches;
- the database session (session.py) keeps the one autocommit connection.

This module runs the loop, orders the database work of one turn (heartbeat,
rescue, then ack and claim in one round trip), and shuts down.
"""

import logging
import os
import selectors
import socket
import time
from dataclasses import dataclass

import psycopg
from django.db import connections

from jobqueue import queries
from jobqueue.conf import get_settings
from jobqueue.scheduling.limits import START_SLACK, queue_modes, specs
from jobqueue.scheduling.periodic import PeriodicEnqueuer
from jobqueue.worker import telemetry
from jobqueue.worker.children import InHand
from jobqueue.worker.dispatch import Dispatcher
from jobqueue.worker.execution import Executions
from jobqueue.worker.fence import LeaseFence
from jobqueue.worker.lease import Beat, LeaseKeeper
from jobqueue.worker.limits import ClaimLimits
from jobqueue.worker.pool import ChildPool
from jobqueue.worker.recorder import OutcomeRecorder
from jobqueue.worker.recycling import Recycling
from jobqueue.worker.session import DatabaseSession
from jobqueue.worker.stopping import StopDeadline

logger = logging.getLogger("jobqueue.worker")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    queues: tuple[str, ...] = ()  # empty: every queue
    concurrency: int = 1
    async_slots: int | None = None  # per child (None: JOBQUEUE["ASYNC_SLOTS"])
    threads: int | None = None  # per child (None: JOBQUEUE["THREADS"])
    burst: bool = False  # drain what is ready, then exit
    max_jobs: int | None = None  # exit after this many jobs
    shutdown_timeout: float = 30.0
    max_jobs_per_child: int | None = None  # replace a child after it was sent this many
    max_child_memory: int | None = None  # MB: replace a child whose memory passed it

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        for name in ("async_slots", "threads"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("max_jobs", "max_jobs_per_child", "max_child_memory"):
            if (value := getattr(self, name)) is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must not be negative, got {self.shutdown_timeout}")


class Supervisor:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.conf = get_settings()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.worker_id: int | None = None
        self.selector = selectors.DefaultSelector()
        self.session = DatabaseSession(self.conf, self.selector)
        self.fence = LeaseFence()
        self.lease = LeaseKeeper(self.conf, self.fence)
        self.executions = Executions(
            slots={
                "async": _given(options.async_slots, self.conf.ASYNC_SLOTS),
                "thread": _given(options.threads, self.conf.THREADS),
            },
            queue_modes=queue_modes(self.conf),
        )
        started_for = {"async": options.async_slots, "thread": options.threads}
        self.dispatcher = Dispatcher(
            options.concurrency,
            self.executions,
            expected=[mode for mode, slots in started_for.items() if slots],
        )
        self.recorder = OutcomeRecorder(self.conf, self.name)
        self.periodic = PeriodicEnqueuer.from_settings(self.conf)  # any worker enqueues ticks
        self.pool = ChildPool(
            self.conf,
            worker_name=self.name,
            fence=self.fence,
            selector=self.selector,
            dispatcher=self.dispatcher,
            recorder=self.recorder,
            threads=self.executions.slots["thread"],
            recycling=Recycling(options.max_jobs_per_child, options.max_child_memory),
        )
        self.stop = StopDeadline(
            worker_name=self.name,
            shutdown_timeout=options.shutdown_timeout,
            running=lambda: len(self.pool.in_hand()),
        )
        self.claim_wanted = True
        self.limits = ClaimLimits()  # global limits, as the last claim saw them
        self.drained = False  # burst: the last claim found nothing ready
        self.next_poll = time.monotonic()

    @property
    def db(self) -> psycopg.Connection | None:
        return self.session.db

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        """Serve until asked to stop (or drained, in burst mode); returns the exit code."""
        self.stop.install(self.selector)
        # Children must not inherit Django's connections, nor a connection pool
        # (DATABASES OPTIONS "pool"): its threads do not survive the fork.
        connections.close_all()
        for connection in connections.all(initialized_only=True):
            if hasattr(connection, "close_pool"):
                connection.close_pool()
        self.pool.start(self.options.concurrency)
        logger.info(
            "worker %s started: queues=%s concurrency=%d async-slots=%d threads=%d",
            self.name,
            ",".join(self.options.queues) or "*",
            self.options.concurrency,
            self.executions.slots["async"],
            self.executions.slots["thread"],
        )
        try:
            while not self._finished():
                telemetry.tick()
                self._wait()
                self._feed()
                self._db_step()
                self._feed()
                self.pool.enforce_deadlines(time.monotonic())
        finally:
            self._shutdown()
        return 0

    def _feed(self) -> None:
        self.pool.feed(fenced=self.lease.expired(time.monotonic()))

    def _busy(self) -> bool:
        return self.pool.busy() or bool(self.dispatcher.buffer)

    def _finished(self) -> bool:
        busy = self._busy()
        if self.stop.at is None and self.options.burst and self.drained and not busy:
            self.stop.request("burst: queue drained")
        if (
            self.stop.at is None
            and self.options.max_jobs is not None
            and self.recorder.recorded >= self.options.max_jobs
        ):
            self.stop.request(f"processed {self.recorder.recorded} jobs (--max-jobs)")
        if self.stop.at is None:
            return False
        return (not busy and not self.recorder.waiting) or time.monotonic() >= self.stop.at

    # ------------------------------------------------------------ waiting
    def _wait(self) -> None:
        now = time.monotonic()
        timeout = max(0.0, self._next_timer() - now)
        if self.db is not None and (self._ack_due(now) or (self.claim_wanted and self._demand())):
            timeout = 0.0  # work for the database now; never while there is no connection
        for key, events in self.selector.select(timeout):
            if key.data == "signal":
                self.stop.woken()
            elif key.data == "db":
                self.claim_wanted = True  # a NOTIFY arrived; _db_step reads it
            else:
                self.pool.on_ready(key.data, events)

    def _next_timer(self) -> float:
        """The next moment something is due. Database work waits for a connection: while
        there is none, only the next attempt to make one counts (no busy loop)."""
        if self.db is None:
            timers = [self.session.reconnect_at]
        else:
            timers = [self.lease.next_heartbeat, self.lease.next_rescue, self.next_poll]
            timers.append(self.periodic.next_check)
            timers.extend(t for t in [self.recorder.next_due()] if t is not None)
        timers.extend(t for t in [self.pool.next_deadline(), self.stop.at] if t is not None)
        return min(timers)

    # ----------------------------------------------------------- database
    def _db_step(self) -> None:
        now = time.monotonic()
        if self.db is None and now < self.session.reconnect_at:
            return
        heartbeat = now >= self.lease.next_heartbeat
        rescue = now >= self.lease.next_rescue
        ack = self._ack_due(now)
        # With jobs held back by a limit, a finished job may have made room: claim with the ack.
        claim = self.claim_wanted or now >= self.next_poll or (ack and self.limits.held_back)
        periodic = self.periodic.due(now)
        if self.db is not None and not (heartbeat or rescue or ack or claim or periodic):
            return
        try:
            with self.session.bounded():
                if self.db is None and not self._connect():
                    return
                if heartbeat:
                    self._heartbeat()
                if rescue:
                    with self._cursor() as cur:
                        self.lease.rescue(cur)
                if periodic:
                    with self._cursor() as cur:
                        self.periodic.run(cur)
                if ack or claim:
                    self._ack_and_claim(ack=ack, claim=claim)
                # Also the NOTIFYs that arrived during the statements above.
                queues = self.session.notified_queues()
            if any(not self.options.queues or q in self.options.queues for q in queues):
                self.claim_wanted = True
        except psycopg.OperationalError as e:
            self.session.lost(e)

    def _connect(self) -> bool:
        """Connect (or reconnect) and register; False, with a retry scheduled, on failure."""
        try:
            with self.session.open().cursor() as cur:
                if self.worker_id is None:
                    self._register(cur)
                else:
                    self._give_back_unknown(cur)
        except psycopg.OperationalError as e:
            self.session.lost(e)
            return False
        self.session.ready()
        self.claim_wanted = True
        self.lease.connected(time.monotonic())
        logger.info("worker %s connected as worker #%s", self.name, self.worker_id)
        return True

    def _register(self, cur: psycopg.Cursor) -> None:
        queries.sync_limits(cur, specs(self.conf.QUEUES))
        self.worker_id = queries.register_worker(
            cur,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=self.options.queues,
            concurrency=self.options.concurrency,
            lease=self.conf.LEASE,
        )

    def _in_hand(self) -> list[InHand]:
        return self.pool.in_hand() + [j for j in self.dispatcher.buffer if not j.lost]

    def _held(self) -> list[tuple[int, int]]:
        """(id, token) of every job this worker holds in the database."""
        return [j.key for j in self._in_hand()] + self.recorder.held()

    def _give_back_unknown(self, cur: psycopg.Cursor) -> None:
        """Re-queue jobs claimed for this worker whose claim was cut off with the connection."""
        known = [token for _, token in self._held()]
        ids = queries.give_back_unknown(
            cur, worker=self._worker(), worker_name=self.name, known_tokens=known
        )
        if ids:
            logger.warning("gave back %d jobs whose claim was lost with the connection", len(ids))

    def _cursor(self) -> psycopg.Cursor:
        assert self.db is not None
        return self.db.cursor()

    def _ack_due(self, now: float) -> bool:
        return self.recorder.due(now, idle=not self.pool.busy(), stopping=self.stop.at is not None)

    def _demand(self) -> int:
        if self.stop.at is not None:
            return 0
        return self.dispatcher.demand(self.pool.children, limit=self.options.max_jobs)

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
        # A rate-limited job must start within START_SLACK of this moment, which is
        # before the database reads its clock for the claim (jobqueue/scheduling/limits.py).
        sent_at = time.monotonic()
        free = self.dispatcher.free(self.pool.children)
        soon = min(demand, self.dispatcher.soon(self.pool.children, within=START_SLACK / 2))
        limits = self.limits
        try:
            with self.db.cursor() as ack_cur, self.db.cursor() as lock_cur, \
                    self.db.cursor() as claim_cur:  # fmt: skip
                with self.db.pipeline():
                    if ack:
                        sent = self.recorder.send(ack_cur, self._worker())
                    if demand:
                        queries.claim(
                            claim_cur,
                            lock_cursor=lock_cur,
                            worker=self._worker(),
                            demand=demand,
                            free=free,
                            soon=soon,
                            queues=self.options.queues,
                            **limits.claim_options(),
                        )
                if sent:
                    self.recorder.written(sent, queries.acked(ack_cur))
                if demand:
                    came_into_play = limits.read(lock_cur, sent_at=sent_at)
                    if limits.opens_at is not None:  # claim again as a rate window opens
                        self.next_poll = min(self.next_poll, limits.opens_at)
                    rows = telemetry.claimed(queries.claimed(claim_cur))
                    taken = self.dispatcher.take(rows, start_by=limits.start_by(sent_at))
                    # A full batch: more are likely ready; so are jobs a limit guards
                    # when limits just came into play (this claim left them alone).
                    self.claim_wanted = taken == demand or came_into_play
                    # Drained (--burst): nothing ready, held-back jobs included, which a
                    # claim that can start nothing soon does not look at.
                    self.drained = (
                        not taken and not limits.held_back and not came_into_play and soon > 0
                    )
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
            self._sample_backlog(cur)
        self._on_beat(beat)

    def _sample_backlog(self, cur: psycopg.Cursor) -> None:
        """The health page's queue-depth chart: one sample a minute, written by whichever
        worker's heartbeat comes first (for the others the statement finds it and stops)."""
        try:
            queries.record_sample(cur)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as e:  # never the heartbeat's business: it has committed
            logger.warning("could not sample the queue depth: %s", e)

    def _on_beat(self, beat: Beat) -> None:
        """Stop what is no longer ours; note what was asked to cancel."""
        self.pool.note_beat(beat.held, beat.cancel)
        held_or_cancelled = set(beat.held) - beat.cancel
        gone = {j.assignment.job_id for j in self.dispatcher.buffer} - held_or_cancelled
        for job in self.dispatcher.drop(gone):
            if job.assignment.job_id in beat.cancel:
                self.recorder.record_cancelled_before_start(job)

    def _worker(self) -> int:
        assert self.worker_id is not None
        return self.worker_id

    # ----------------------------------------------------------- shutdown
    def _shutdown(self) -> None:
        """Read what children reported, kill what did not finish in time, give back every
        job not done, write the outcomes, deregister. Never raises a database error: what
        cannot be written is left to the lease."""
        self.pool.stop()
        unfinished = [j.key for j in self._in_hand()]
        try:
            with self.session.bounded():
                self._record_shutdown(unfinished)
        except psycopg.Error as e:
            logger.error("could not record shutdown (%s): the lease will rescue the jobs", e)
        self.session.close()
        telemetry.given_back(self._in_hand())
        if unfinished:
            logger.warning(
                "gave back %d unfinished jobs: %s", len(unfinished), [i for i, _ in unfinished]
            )
        logger.info("worker %s stopped after %d jobs", self.name, self.recorder.recorded)

    def _record_shutdown(self, unfinished: list[tuple[int, int]]) -> None:
        """Write the waiting outcomes, give back the unfinished jobs, deregister."""
        if self.worker_id is None:
            return
        db = self.db or self.session.open()
        if self.recorder.waiting:
            with db.cursor() as cur:
                sent = self.recorder.send(cur, self.worker_id)
                self.recorder.written(sent, queries.acked(cur))
        with db.cursor() as cur:
            queries.give_back(cur, worker_name=self.name, jobs=unfinished)
            queries.unregister_worker(cur, worker=self.worker_id)


def _given(option: int | None, setting: int) -> int:
    return setting if option is None else option
