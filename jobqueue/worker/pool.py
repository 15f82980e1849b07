"""The pool of child processes: feed them, read their reports, reap them, and stop the
ones that must stop (past a timeout or a cancel's grace, past the fence, or running a
job that was taken from this worker).

Reports go to the outcome recorder, run times to the dispatcher, and the jobs a
dead child had not begun (or ran only beside the job that got it killed) back
to the dispatcher's buffer.
"""

import logging
import selectors
import time

from jobqueue.conf import JobQueueSettings
from jobqueue.worker.children import Child, InHand, start_child
from jobqueue.worker.dispatch import Dispatcher
from jobqueue.worker.fence import LeaseFence
from jobqueue.worker.outcome import Report
from jobqueue.worker.recorder import OutcomeRecorder
from jobqueue.worker.recycling import Recycling

logger = logging.getLogger("jobqueue.worker")

_READ = selectors.EVENT_READ
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE
_SCAN_INTERVAL = 0.1


class ChildPool:
    def __init__(
        self,
        conf: JobQueueSettings,
        *,
        worker_name: str,
        fence: LeaseFence,
        selector: selectors.BaseSelector,
        dispatcher: Dispatcher,
        recorder: OutcomeRecorder,
        threads: int,
        recycling: Recycling,
    ) -> None:
        self.conf = conf
        self.worker_name = worker_name
        self.fence = fence
        self.selector = selector
        self.dispatcher = dispatcher
        self.recorder = recorder
        self.threads = threads  # thread-mode slots of each child
        self.recycling = recycling
        self.children: list[Child] = []
        self.respawn = True  # replace a child that dies (not once the worker is stopping)
        # Children running concurrent jobs are looked over for overdue ones this often
        # rather than at each job's exact deadline: hundreds of jobs start and end each
        # second there, and a deadline already includes CANCEL_GRACE.
        self.next_scan = 0.0

    def start(self, n: int) -> None:
        for _ in range(n):
            self._add_child()

    def _add_child(self) -> None:
        child = start_child(self.children, self.worker_name, self.fence, threads=self.threads)
        child.allowance = self.recycling.max_jobs
        self.children.append(child)
        self.selector.register(child.channel, _READ, child)

    def busy(self) -> bool:
        return any(c.busy() for c in self.children)

    def in_hand(self) -> list[InHand]:
        """The jobs sent to children and not done, except those no longer ours."""
        return [j for c in self.children for j in c.holding() if not j.lost]

    # ------------------------------------------------------------ feeding
    def feed(self, *, fenced: bool) -> None:
        """Hand buffered jobs to children, unless the fence has fallen (see fence.py)."""
        if self.dispatcher.buffer and not fenced:
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

    # ------------------------------------------------------------ reading
    def on_ready(self, child: Child, events: int) -> None:
        """The selector found ``child``'s socket writable and/or readable."""
        if events & selectors.EVENT_WRITE:
            self._flush(child)
        if events & selectors.EVENT_READ:
            reports = child.read()
            if reports is None:
                self._on_death(child)
            else:
                self._on_reports(child, reports)

    def _on_reports(self, child: Child, reports: list[Report]) -> None:
        for report in reports:
            job = child.finish(report.job_id)
            if job is None:
                logger.error("child reported job %s it was not running", report.job_id)
                continue
            if report.kind != "late":
                self.dispatcher.learn(job.assignment.task, report.duration)
            if not job.lost:
                self.recorder.record(job, report)
        self._recycle_if_due(child)

    def _recycle_if_due(self, child: Child) -> None:
        """Retire ``child`` once recycling says so (recycling.py): it takes no more jobs,
        and enforce_deadlines stops it once idle."""
        if child.kill_reason is None and not child.retiring and (why := self.recycling.due(child)):
            logger.info(
                "child %s: %s; it takes no more jobs and is replaced once idle",
                child.process.pid,
                why,
            )
            child.retiring = True

    def _on_death(self, child: Child) -> None:
        """Record what the death means for each job the child held.

        The job it was killed for gets that reason (timeout, cancel, fence);
        jobs it ran beside that one, and jobs sent but not begun, did nothing
        wrong and run again here, on the same attempt. When nothing says which
        job killed it (a crash: a segfault, the OOM killer), a job that ran alone
        spends an attempt. Jobs that ran together (thread or async mode) become
        suspects: each runs again alone in a child, on the same attempt, so the
        one that crashes alone spends its attempt and the others never do.
        """
        self.selector.unregister(child.channel)
        child.channel.close()
        self.children.remove(child)
        running = child.running()
        waiting = list(child.jobs)[1:]
        explained = child.kill_reason not in (None, "shutdown", "fenced")
        blamed = [j for j in running if not explained or j.assignment.job_id in child.killed_for]
        innocent = [j for j in running if explained and j.assignment.job_id not in child.killed_for]
        innocent += waiting
        if child.kill_reason is None and len(running) > 1:
            logger.warning(
                "jobs %s: their child crashed (%s); each runs again alone, on the same attempt",
                [j.assignment.job_id for j in running],
                child.death_note(),
            )
            for job in running:
                job.suspect = True
            innocent, blamed = running + innocent, []
        for job in reversed(innocent):  # another child runs them
            if not job.lost:
                job.began_at = 0.0
                self.dispatcher.buffer.appendleft(job)
        for job in blamed:
            if job.lost:
                continue
            report = child.death_report(job, cancel_grace=self.conf.CANCEL_GRACE)
            logger.warning("job %s: %s", job.assignment.job_id, report.error["message"])  # type: ignore[index]
            self.recorder.record(job, report)
        if child.kill_reason == "retired":
            logger.info("child %s replaced: %s", child.process.pid, child.death_note())
        elif not running and self.respawn:
            logger.warning("idle child died: %s", child.death_note())
        if self.respawn:
            self._add_child()

    # ----------------------------------------------------------- stopping
    def next_deadline(self) -> float | None:
        """When the next running job must be stopped, unless something changes first."""
        busy = [c for c in self.children if c.busy() and c.kill_reason is None]
        if not busy:
            return None
        deadlines = [self.fence.until]
        for child in busy:
            if child.flying:
                deadlines.append(self.next_scan)
            elif child.job is not None:
                deadlines.append(self._deadline(child.job))
        return min(deadlines)

    def _deadline(self, job: InHand) -> float:
        grace = self.conf.CANCEL_GRACE
        deadline = float("inf")
        if job.assignment.timeout:
            deadline = job.began_at + job.assignment.timeout + grace
        if job.cancel_seen_at is not None:
            deadline = min(deadline, job.cancel_seen_at + grace)
        return deadline

    def enforce_deadlines(self, now: float) -> None:
        """Stop the jobs past their timeout or cancel grace, or every job once the fence
        has fallen (the lease could run out before the next heartbeat succeeds).

        A process-mode or async-mode job that overstays is stopped by killing its
        child (an async job that ignores its cancellation blocks the whole loop).
        A thread-mode one cannot be stopped alone: its child is retired, and
        killed once every job it still runs is overdue.
        """
        if self.fence.expired(now):
            for child in self.children:
                if child.busy() and child.kill_reason is None:
                    self._kill_fenced(child)
            return
        scan = now >= self.next_scan
        if scan:
            self.next_scan = now + _SCAN_INTERVAL
        for child in self.children:
            if child.kill_reason is not None or (child.flying and not scan):
                continue
            overdue = [j for j in child.running() if now >= self._deadline(j)]
            if overdue and overdue[0].assignment.execution == "thread":
                self._retire(child, overdue)
            elif overdue:
                self._kill_overdue(child, overdue)
            if child.retiring and child.kill_reason is None:
                self._kill_if_all_overdue(child, now)

    def _kill_fenced(self, child: Child) -> None:
        running = child.running()
        logger.error(
            "jobs %s: no heartbeat succeeded in time; stopping them before their lease "
            "(%g s) can run out",
            [j.assignment.job_id for j in running],
            self.conf.LEASE,
        )
        child.kill("fenced", [j.assignment.job_id for j in running])

    def _kill_overdue(self, child: Child, jobs: list[InHand]) -> None:
        reason = "cancel" if jobs[0].cancel_seen_at is not None else "timeout"
        ids = [j.assignment.job_id for j in jobs]
        logger.warning("jobs %s: killing their child (%s)", ids, reason)
        child.kill(reason, ids)

    def _retire(self, child: Child, jobs: list[InHand]) -> None:
        if not child.retiring:
            logger.warning(
                "jobs %s: a thread ran past its deadline without stopping; its child takes "
                "no more jobs and is replaced once the rest of its jobs end",
                [j.assignment.job_id for j in jobs],
            )
            child.retiring = True

    def _kill_if_all_overdue(self, child: Child, now: float) -> None:
        running = child.running()
        if running and all(now >= self._deadline(j) for j in running):
            self._kill_overdue(child, running)
        elif not running:
            child.kill("retired")

    def note_beat(self, held: set[int], cancel: set[int]) -> None:
        """After a heartbeat: stop children holding jobs no longer ours, note cancel requests."""
        now = time.monotonic()
        for child in self.children:
            holding = child.holding()
            for job in holding:
                if job.assignment.job_id not in held:
                    job.lost = True
            lost = [j for j in holding if j.lost]
            if lost and child.kill_reason is None:
                # A job no longer ours may be running elsewhere now: its child is stopped,
                # whichever job it is running; the jobs beside it run again here.
                logger.error(
                    "jobs %s were taken from this worker (rescued); stopping their child",
                    [j.assignment.job_id for j in lost],
                )
                child.kill("taken", [j.assignment.job_id for j in lost])
            for job in child.running():
                if job.assignment.job_id in cancel and not job.cancel_seen_at:
                    job.cancel_seen_at = now
                    if job.assignment.execution == "async":
                        child.cancel(job.assignment.job_id)

    def stop(self) -> None:
        """At shutdown: record what children reported up to now, kill the busy ones, stop the
        idle ones, and record what the killed ones had reported before they died."""
        self.respawn = False
        for child in self.children:
            self._drain(child)  # a job that finished at the deadline is not run again
        for child in self.children:
            if child.busy():
                child.kill("shutdown")
            else:
                child.stop()
        for child in self.children:
            child.process.join(timeout=5)
            self._drain(child)

    def _drain(self, child: Child) -> None:
        """Record every report a child has written so far, without waiting for more."""
        while (reports := child.read()) is not None and reports:
            self._on_reports(child, reports)
