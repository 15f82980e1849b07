"""The supervisor's view of its child processes: start, assign, read, stop, kill."""

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from jobqueue.worker.child import STOP, child_main
from jobqueue.worker.executor import Assignment
from jobqueue.worker.outcome import Report

_fork = multiprocessing.get_context("fork")


@dataclass(slots=True, kw_only=True)
class InHand:
    """A claimed job the supervisor is responsible for until it is acknowledged."""

    assignment: Assignment
    max_attempts: int
    queue: str
    began_at: float = 0.0  # monotonic time the child began running it
    cancel_seen_at: float | None = None  # monotonic time its cancel request was first seen


@dataclass(slots=True, kw_only=True)
class Child:
    """A child and the jobs sent to it, in the order it runs them: the first is running.

    Short jobs are sent a few at a time so that a child never waits while the
    supervisor is busy with the database; long jobs one at a time.
    """

    process: BaseProcess
    pipe: Connection
    jobs: deque[InHand] = field(default_factory=deque)
    # Why the supervisor killed it, so the job's error says so: "timeout" or "cancel".
    kill_reason: str | None = None

    @property
    def job(self) -> InHand | None:
        """The job the child is running now."""
        return self.jobs[0] if self.jobs else None

    def has_room(self, depth: int) -> bool:
        return self.kill_reason is None and len(self.jobs) < depth

    def assign(self, job: InHand) -> None:
        a = job.assignment
        if not self.jobs:
            job.began_at = time.monotonic()
        self.jobs.append(job)
        self.pipe.send((a.job_id, a.task, a.args, a.kwargs, a.attempts, a.timeout))

    def finish_first(self) -> InHand:
        """The running job is done: the next one sent, if any, begins now."""
        job = self.jobs.popleft()
        if self.jobs:
            self.jobs[0].began_at = time.monotonic()
        return job

    def read(self) -> Report | None:
        """The child's report, or None when the child has died (its pipe is closed)."""
        try:
            return self.pipe.recv()
        except (EOFError, OSError):
            return None

    def kill(self, reason: str) -> None:
        self.kill_reason = reason
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send(STOP)

    def death_note(self) -> str:
        """How the child ended, in words, once it has."""
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is None:
            return "the child process stopped answering"
        if code < 0:
            return f"the child process was killed by {signal.Signals(-code).name}"
        return f"the child process exited with code {code}"


def start_child(others: list[Child], worker_name: str) -> Child:
    """Fork a hot child; it closes the pipes of its siblings, which are the supervisor's."""
    parent_end, child_end = _fork.Pipe(duplex=True)
    process = _fork.Process(
        target=child_main,
        args=(child_end, [c.pipe for c in others] + [parent_end], worker_name, os.getpid()),
        name="jobqueue-child",
        daemon=True,
    )
    process.start()
    child_end.close()
    return Child(process=process, pipe=parent_end)
