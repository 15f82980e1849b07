"""The supervisor's view of its child processes: start, assign, read, stop, kill."""

import contextlib
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
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
    dispatched_at: float = 0.0  # monotonic time the child got it
    cancel_seen_at: float | None = None  # monotonic time its cancel request was first seen


@dataclass(slots=True, kw_only=True)
class Child:
    process: BaseProcess
    pipe: Connection
    job: InHand | None = None
    # Why the supervisor killed it, so the job's error says so: "timeout" or "cancel".
    kill_reason: str | None = None

    @property
    def idle(self) -> bool:
        return self.job is None and self.kill_reason is None

    def assign(self, job: InHand) -> None:
        a = job.assignment
        job.dispatched_at = time.monotonic()
        self.job = job
        self.pipe.send((a.job_id, a.task, a.args, a.kwargs, a.attempts, a.timeout))

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
