"""The supervisor's view of its child processes: start, assign, read, stop, kill."""

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

from jobqueue.exceptions import ChildCrashed, JobCancelled, JobTimeout, WorkerLost
from jobqueue.worker.channel import Channel, ChannelClosed
from jobqueue.worker.child import CANCEL, LAST_WORDS, STOP, child_main
from jobqueue.worker.concurrent import EXIT_BROKEN
from jobqueue.worker.executor import Assignment
from jobqueue.worker.fence import EXIT_FENCED, LeaseFence
from jobqueue.worker.outcome import Report, error_of

_fork = multiprocessing.get_context("fork")


@dataclass(slots=True, kw_only=True)
class InHand:
    """A claimed job the supervisor is responsible for until it is acknowledged."""

    assignment: Assignment
    max_attempts: int
    queue: str
    began_at: float = 0.0  # monotonic time the child began running it
    cancel_seen_at: float | None = None  # monotonic time its cancel request was first seen
    lost: bool = False  # the heartbeat found it no longer ours: never run, nothing to record
    # It was in flight in a child that crashed with nothing to say which job did it: it
    # runs again alone in a child (pool.ChildPool._on_death), on the same attempt.
    suspect: bool = False

    @property
    def key(self) -> tuple[int, int]:
        """(job id, fencing token): what the database knows this attempt by."""
        return (self.assignment.job_id, self.assignment.token)


@dataclass(slots=True, kw_only=True)
class Child:
    """A child and the jobs sent to it.

    Process-mode jobs (``jobs``) run one at a time, in the order sent: the
    first is running. Short ones are sent a few at a time so that a child
    never waits while the supervisor is busy with the database; long ones one
    at a time. Thread- and async-mode jobs (``flying``) all run at once, up
    to the child's slots of their mode. A child holds one kind or the other,
    never both: a process-mode job is alone in its process.
    """

    process: BaseProcess
    channel: Channel
    jobs: deque[InHand] = field(default_factory=deque)
    flying: dict[int, InHand] = field(default_factory=dict)  # concurrent jobs, by job id
    # Why the supervisor killed it, and for which jobs, so their errors say so:
    # "timeout", "cancel", "fenced" (the lease was about to run out), "taken" (a
    # job was rescued from this worker), "retired" (see below, once idle) or "shutdown".
    kill_reason: str | None = None
    killed_for: frozenset[int] = frozenset()
    # A thread job ran past its deadline and CANCEL_GRACE without stopping (a thread
    # cannot be interrupted): the child takes no more jobs and is killed once all it
    # still runs are overdue too. Or it is due for recycling (recycling.py): it takes
    # no more jobs and is killed once idle.
    retiring: bool = False
    # Jobs it may still be sent before it is recycled (--max-jobs-per-child); None: any.
    allowance: int | None = None
    # The exception that ended the child, as it sent it last (child.LAST_WORDS): an error
    # entry's type, message and traceback.
    last_words: dict[str, str] | None = None

    @property
    def job(self) -> InHand | None:
        """The process-mode job the child is running now."""
        return self.jobs[0] if self.jobs else None

    @property
    def flying_mode(self) -> str | None:
        """The mode ("thread" or "async") of the concurrent jobs running here, if any."""
        for job in self.flying.values():
            return job.assignment.execution
        return None

    def holding(self) -> list[InHand]:
        """Every job sent to this child and not reported."""
        return [*self.jobs, *self.flying.values()]

    def running(self) -> list[InHand]:
        """The jobs this child is running now."""
        if self.flying:
            return list(self.flying.values())
        return [self.jobs[0]] if self.jobs else []

    def busy(self) -> bool:
        return bool(self.jobs or self.flying)

    @property
    def alone(self) -> bool:
        """Whether it runs a suspect (see InHand.suspect): then it holds nothing else, and is
        sent nothing else, so its first job tells."""
        first = self.jobs[0] if self.jobs else next(iter(self.flying.values()), None)
        return first is not None and first.suspect

    def free_bytes(self, max_bytes: int) -> int | None:
        """Bytes of jobs this child may still be sent now; None for an idle child.

        An idle child takes any job: it is waiting on its socket and reads the
        whole message. A busy one takes jobs only while those it has not begun
        stay under ``max_bytes``, so that a send never waits for it to finish a job.
        """
        if not self.jobs:
            return None
        waiting = sum(job.assignment.size for job in list(self.jobs)[1:]) + self.channel.unsent
        return max(0, max_bytes - waiting)

    def assign(self, jobs: Sequence[InHand]) -> None:
        """Send ``jobs`` in one message: process-mode ones run in this order, the others
        all at once.

        Raises OSError, with nothing assigned, when the child has gone.
        """
        self.channel.send([job.assignment.as_message() for job in jobs])
        if self.allowance is not None:
            self.allowance -= len(jobs)
        now = time.monotonic()
        if jobs[0].assignment.execution != "process":
            for job in jobs:
                job.began_at = now
                self.flying[job.assignment.job_id] = job
            return
        if not self.jobs:
            jobs[0].began_at = now
        self.jobs.extend(jobs)

    def finish(self, job_id: int) -> InHand | None:
        """The job ``job_id`` is done (reported); None if this child was not running it."""
        job = self.flying.pop(job_id, None)
        if job is not None:
            return job
        if self.jobs and self.jobs[0].assignment.job_id == job_id:
            return self.finish_first()
        return None

    def finish_first(self) -> InHand:
        """The running process-mode job is done: the next one sent, if any, begins now."""
        job = self.jobs.popleft()
        if self.jobs:
            self.jobs[0].began_at = time.monotonic()
        return job

    def cancel(self, job_id: int) -> None:
        """Ask the child to cancel an async job at once (asyncio cancellation)."""
        with contextlib.suppress(OSError):
            self.channel.send((CANCEL, job_id))

    def read(self) -> list[Report] | None:
        """The reports the child has sent, or None when it has died (its socket is closed)."""
        try:
            messages = self.channel.receive_ready()
        except ChannelClosed:
            return None
        reports = []
        for message in messages:
            if message[0] == LAST_WORDS:
                self.last_words = message[1]
            else:
                reports.append(Report.from_message(message))
        return reports

    def kill(self, reason: str, job_ids: Iterable[int] = ()) -> None:
        self.kill_reason, self.killed_for = reason, frozenset(job_ids)
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(STOP)

    def death_note(self) -> str:
        """How the child ended, in words, once it has."""
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is None:
            return "the child process stopped answering"
        if code < 0:
            return f"the child process was killed by {signal.Signals(-code).name}"
        if code == EXIT_FENCED:
            return "the child stopped itself: its worker's lease was about to run out"
        if code == EXIT_BROKEN:
            return "the child stopped itself: it could no longer report its jobs"
        if self.last_words is not None:  # a Python exception it sent word of
            kind, message = self.last_words["type"], self.last_words["message"]
            return f"the child process exited with code {code}, of {kind}: {message}"
        return f"the child process exited with code {code}"

    def death_report(self, job: InHand, *, cancel_grace: float) -> Report:
        """What the death of this child means for ``job``, the one it was running."""
        reason = self.kill_reason if job.assignment.job_id in self.killed_for else None
        if reason in ("timeout", "cancel"):  # a retired child's jobs: each overdue its own way
            reason = "cancel" if job.cancel_seen_at is not None else "timeout"
        note = self.death_note()
        if reason is None and self.process.exitcode == EXIT_FENCED:
            reason = "fenced"
        match reason:
            case "cancel":
                error = error_of(
                    JobCancelled,
                    f"cancelled: stopped after ignoring the request for {cancel_grace:g} s",
                )
                return Report(job_id=job.assignment.job_id, kind="cancelled", error=error)
            case "timeout":
                error = error_of(
                    JobTimeout,
                    f"ran past its timeout of {job.assignment.timeout:g} s and was killed",
                )
            case "fenced":
                error = error_of(
                    WorkerLost,
                    "stopped before its lease could run out: the worker's heartbeat had not "
                    f"succeeded for too long ({note})",
                )
            case "taken":
                error = error_of(WorkerLost, "stopped: the job was rescued from this worker")
            case _:
                error = error_of(ChildCrashed, note)
                if self.last_words is not None:
                    error["traceback"] = self.last_words["traceback"]
        return Report(job_id=job.assignment.job_id, kind="failed", error=error)


def start_child(others: list[Child], worker_name: str, fence: LeaseFence, *, threads: int) -> Child:
    """Fork a hot child; it closes the channels of its siblings, which are the supervisor's."""
    parent_end, child_end = Channel.pair()
    process = _fork.Process(
        target=child_main,
        args=(
            child_end,
            [c.channel for c in others] + [parent_end],
            worker_name,
            os.getpid(),
            fence,
        ),
        kwargs={"threads": threads},
        name="jobqueue-child",
        daemon=True,
    )
    process.start()
    child_end.close()
    parent_end.set_nonblocking()
    return Child(process=process, channel=parent_end)
