"""The pool of child processes: feed them, read their reports, reap them, and stop the
ones that must stop (past a timeout or a cancel's grace, past the fence, or running a
job that was taken from this worker).

Reports go to the outcome recorder, run times to the dispatcher, and the jobs a
dead child had not begun back to the dispatcher's buffer.
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

logger = logging.getLogger("jobqueue.worker")

_READ = selectors.EVENT_READ
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE


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
    ) -> None:
        self.conf = conf
        self.worker_name = worker_name
        self.fence = fence
        self.selector = selector
        self.dispatcher = dispatcher
        self.recorder = recorder
        self.children: list[Child] = []
        self.respawn = True  # replace a child that dies (not once the worker is stopping)

    def start(self, n: int) -> None:
        for _ in range(n):
            self._add_child()

    def _add_child(self) -> None:
        child = start_child(self.children, self.worker_name, self.fence)
        self.children.append(child)
        self.selector.register(child.channel, _READ, child)

    def busy(self) -> bool:
        return any(c.jobs for c in self.children)

    def in_hand(self) -> list[InHand]:
        """The jobs sent to children and not done, except those no longer ours."""
        return [j for c in self.children for j in c.jobs if not j.lost]

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
            if child.job is None or report.job_id != child.job.assignment.job_id:
                logger.error("child reported job %s it was not running", report.job_id)
                continue
            job = child.finish_first()
            self.dispatcher.learn(job.assignment.task, report.duration)
            if not job.lost:
                self.recorder.record(job, report)

    def _on_death(self, child: Child) -> None:
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
        elif job is None and self.respawn:
            logger.warning("idle child died: %s", child.death_note())
        if self.respawn:
            self._add_child()

    # ----------------------------------------------------------- stopping
    def next_deadline(self) -> float | None:
        """When the next running job must be stopped, unless something changes first."""
        busy = [c.job for c in self.children if c.job is not None and c.kill_reason is None]
        if not busy:
            return None
        return min([self.fence.until, *(self._deadline(job) for job in busy)])

    def _deadline(self, job: InHand) -> float:
        grace = self.conf.CANCEL_GRACE
        deadline = float("inf")
        if job.assignment.timeout:
            deadline = job.began_at + job.assignment.timeout + grace
        if job.cancel_seen_at is not None:
            deadline = min(deadline, job.cancel_seen_at + grace)
        return deadline

    def enforce_deadlines(self, now: float) -> None:
        """Kill the child of a job past its timeout or cancel grace, or of any job once the
        fence has fallen (the lease could run out before the next heartbeat succeeds)."""
        fenced = self.fence.expired(now)
        for child in self.children:
            job = child.job
            if job is None or child.kill_reason is not None:
                continue
            if fenced:
                logger.error(
                    "job %s: no heartbeat succeeded in time; stopping it before its lease "
                    "(%g s) can run out",
                    job.assignment.job_id,
                    self.conf.LEASE,
                )
                child.kill("fenced", job.assignment.job_id)
            elif now >= self._deadline(job):
                reason = "cancel" if job.cancel_seen_at is not None else "timeout"
                logger.warning("job %s: killing its child (%s)", job.assignment.job_id, reason)
                child.kill(reason, job.assignment.job_id)

    def note_beat(self, held: set[int], cancel: set[int]) -> None:
        """After a heartbeat: stop children holding jobs no longer ours, note cancel requests."""
        now = time.monotonic()
        for child in self.children:
            for job in child.jobs:
                if job.assignment.job_id not in held:
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
            if running and running.assignment.job_id in cancel and not running.cancel_seen_at:
                running.cancel_seen_at = now

    def stop(self) -> None:
        """At shutdown: record what children reported up to now, kill the busy ones, stop the
        idle ones, and record what the killed ones had reported before they died."""
        self.respawn = False
        for child in self.children:
            self._drain(child)  # a job that finished at the deadline is not run again
        for child in self.children:
            if child.jobs:
                child.kill("shutdown", None)
            else:
                child.stop()
        for child in self.children:
            child.process.join(timeout=5)
            self._drain(child)

    def _drain(self, child: Child) -> None:
        """Record every report a child has written so far, without waiting for more."""
        while (reports := child.read()) is not None and reports:
            self._on_reports(child, reports)
