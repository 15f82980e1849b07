"""Runs one attempt of one job inside a child process and reports how it went."""

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, NamedTuple

from django.db import connections
from django.tasks.base import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from jobqueue.backend import JobQueueBackend, load_task
from jobqueue.exceptions import JobCancelled, JobTimeout, Snooze
from jobqueue.progress import ProgressReporter, set_reporter
from jobqueue.worker.hygiene import ConnectionHygiene
from jobqueue.worker.outcome import Report, ReportKind
from jobqueue.worker.storable import describe_error, encode_result

logger = logging.getLogger("jobqueue.worker")


@dataclass(frozen=True, slots=True)
class Assignment:
    """A claimed job as the supervisor hands it to a child."""

    job_id: int
    token: int  # the attempt's fencing token (lease_token of the claim)
    task: str
    args_json: str  # JSON text, parsed by the child that runs the job
    kwargs_json: str
    attempts: int
    timeout: float | None
    execution: str = "process"  # how the child runs it: "process", "thread" or "async"
    # A rate-limited job's monotonic deadline to start; past it, it goes back unstarted.
    start_by: float | None = None

    def as_message(self) -> tuple[Any, ...]:
        """The fields as a plain tuple, which pickles far faster than the dataclass."""
        return (
            self.job_id, self.token, self.task, self.args_json, self.kwargs_json, self.attempts,
            self.timeout, self.execution, self.start_by,
        )  # fmt: skip

    @property
    def size(self) -> int:
        """The bytes this assignment's text takes on the wire (pickle sends text as UTF-8)."""
        return _utf8_len(self.task) + _utf8_len(self.args_json) + _utf8_len(self.kwargs_json)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Clock(NamedTuple):
    """When an attempt began: monotonic for its duration, wall-clock for its record."""

    monotonic: float
    wall: float


class JobClock:
    """Raises JobTimeout inside the running job once its timeout has passed (SIGALRM).

    Arming the interval timer is a system call that costs as much as running a
    no-op job, so the alarm is left armed between jobs and re-armed only for a
    deadline earlier than the armed one. An alarm that goes off before the
    running job's deadline (a previous job's) re-arms for the rest of it; one
    that goes off between jobs does nothing.
    """

    def __init__(self) -> None:
        self.deadline: float | None = None  # monotonic deadline of the running job
        self.alarm_at: float | None = None  # monotonic time the armed alarm goes off
        signal.signal(signal.SIGALRM, self._on_alarm)

    def start(self, timeout: float | None) -> None:
        if not timeout:
            self.deadline = None
            return
        self.deadline = time.monotonic() + timeout
        if self.alarm_at is None or self.deadline < self.alarm_at:
            self._arm(timeout)

    def stop(self) -> None:
        self.deadline = None

    def _arm(self, seconds: float) -> None:
        self.alarm_at = time.monotonic() + seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self.alarm_at = None
        if self.deadline is None:
            return
        remaining = self.deadline - time.monotonic()
        if remaining > 0:
            self._arm(remaining)
            return
        self.deadline = None
        raise JobTimeout("the job ran past its timeout")


class Executor:
    """Executes assignments; lives as long as its child process.

    Process mode (``execute``) runs one job at a time on the child's main
    thread, where the job clock's SIGALRM can interrupt it. The concurrent
    modes run many at once: ``execute_in_thread`` on a pool thread (stopped at
    its deadline by progress(), the only place a thread can be stopped) and
    ``execute_async`` as an asyncio task (cancelled at its deadline).
    """

    def __init__(self, *, progress_connection: Any, worker_name: str) -> None:
        self.progress_connection = progress_connection
        self.worker_name = worker_name
        self.tasks: dict[str, Task] = {}
        self.clock = JobClock()
        self.hygiene = ConnectionHygiene(progress_connection)
        self.running: int | None = None  # the process-mode job running: read by the watchdog
        self.progress_lock = threading.Lock()  # the concurrent jobs share progress_connection

    def execute(self, job: Assignment) -> Report:
        """Run one attempt in process mode; the report says how it went, whatever the task did."""
        self.running = job.job_id
        try:
            return self._execute(job)
        finally:
            self.running = None

    def _execute(self, job: Assignment) -> Report:
        begun = self._begin(job)
        if isinstance(begun, Report):
            return begun
        started, task_result, call = begun
        self._set_reporter(job, deadline=None, shared=False)
        self.clock.start(job.timeout)
        try:
            value = call()
            self.clock.stop()
            self.hygiene.reset()  # before task_finished's receivers use a connection
            result_json = encode_result(value)
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            self.clock.stop()
            self.hygiene.reset()  # a timeout may have landed inside a query
            return self._failed(job, task_result, e, started)
        finally:
            set_reporter(None)
        return self._succeeded(job, task_result, result_json, started)

    def execute_in_thread(self, job: Assignment) -> Report:
        """Run one attempt on the calling pool thread (thread mode).

        Nothing can interrupt a thread: past its timeout the job gets
        JobTimeout at its next progress() call, and a job that never calls it
        is left to the supervisor, which retires the child (see pool.py).
        The thread's Django connections are closed afterwards, back to the
        pool when one is configured, so idle threads hold none.
        """
        try:
            begun = self._begin(job)
            if isinstance(begun, Report):
                return begun
            started, task_result, call = begun
            deadline = started.monotonic + job.timeout if job.timeout else None
            self._set_reporter(job, deadline=deadline, shared=True)
            try:
                value = call()
                result_json = encode_result(value)
            except BaseException as e:
                return self._failed(job, task_result, e, started)
            finally:
                set_reporter(None)
            return self._succeeded(job, task_result, result_json, started)
        finally:
            connections.close_all()

    async def execute_async(self, job: Assignment) -> Report:
        """Run one attempt as an asyncio task on the child's event loop (async mode).

        At its timeout the task is cancelled (``asyncio.timeout``); a task
        cancelled from outside (its job's cancel request, see concurrent.py)
        reports as cancelled. A coroutine that never awaits blocks the loop:
        the supervisor kills the child CANCEL_GRACE after the deadline.
        """
        begun = self._begin(job)
        if isinstance(begun, Report):
            return begun
        started, task_result, _ = begun
        task = self.tasks[job.task]
        args, kwargs = task_result.args, task_result.kwargs
        if task.takes_context:
            args = [TaskContext(task_result=task_result), *args]
        self._set_reporter(job, deadline=None, shared=True)
        try:
            async with asyncio.timeout(job.timeout or None):
                value = await task.acall(*args, **kwargs)
            result_json = encode_result(value)
        except TimeoutError as e:
            timeout = JobTimeout("the job ran past its timeout")
            timeout.__cause__ = e
            return self._failed(job, task_result, timeout, started)
        except asyncio.CancelledError as e:
            cancelled = JobCancelled(f"job {job.job_id} was cancelled")
            cancelled.__cause__ = e
            return self._failed(job, task_result, cancelled, started)
        except BaseException as e:
            # SystemExit and KeyboardInterrupt too: raised out of an asyncio task they stop
            # the child's event loop, and with it every job beside this one.
            return self._failed(job, task_result, e, started)
        finally:
            set_reporter(None)
        return self._succeeded(job, task_result, result_json, started)

    def _begin(self, job: Assignment) -> "tuple[Clock, TaskResult, Callable[[], Any]] | Report":
        """Load the task and its arguments and send task_started; a Report if that fails,
        or if the job came too late to start (a rate limit's bound: scheduling/limits.py)."""
        started = Clock(time.monotonic(), time.time())
        if job.start_by is not None and started.monotonic > job.start_by:
            return Report(job_id=job.job_id, kind="late")
        try:
            task = self._task(job.task)
            args, kwargs = json.loads(job.args_json), json.loads(job.kwargs_json)
            # TaskResult copies the arguments recursively: a row stored before enqueue
            # refused deep nesting (backend.MAX_ARGUMENT_DEPTH) raises RecursionError here.
            task_result = self._task_result(job, task, args, kwargs)
        except Exception as e:
            return _failure(job, e, started)
        try:
            task_started.send(JobQueueBackend, task_result=task_result)
        except Exception as e:  # a receiver failed: the attempt fails before the task ran
            return _failure(job, e, started)
        if task.takes_context:
            context: TaskContext = TaskContext(task_result=task_result)
            return started, task_result, lambda: task.call(context, *args, **kwargs)
        return started, task_result, lambda: task.call(*args, **kwargs)

    def _set_reporter(self, job: Assignment, *, deadline: float | None, shared: bool) -> None:
        set_reporter(
            ProgressReporter(
                job_id=job.job_id,
                token=job.token,
                connection=self.progress_connection,
                lock=self.progress_lock if shared else None,
                deadline=deadline,
            )
        )

    def _failed(
        self, job: Assignment, task_result: TaskResult, error: BaseException, started: Clock
    ) -> Report:
        report = _failure(job, error, started)
        object.__setattr__(task_result, "status", TaskResultStatus.FAILED)
        _send_finished(task_result)
        return report

    def _succeeded(
        self, job: Assignment, task_result: TaskResult, result_json: str, started: Clock
    ) -> Report:
        object.__setattr__(task_result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(task_result, "finished_at", timezone.now())
        _send_finished(task_result)
        return Report(
            job_id=job.job_id,
            kind="succeeded",
            result_json=result_json,
            duration=time.monotonic() - started.monotonic,
            started_at=started.wall,
        )

    def _task(self, path: str) -> Task:
        if path not in self.tasks:
            self.tasks[path] = load_task(path)
        return self.tasks[path]

    def _task_result(
        self, job: Assignment, task: Task, args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult:
        now = timezone.now()
        return TaskResult(
            task=task,
            id=str(job.job_id),
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=args,
            kwargs=kwargs,
            backend=task.backend,
            errors=[],
            worker_ids=[self.worker_name] * job.attempts,
        )


def _send_finished(task_result: TaskResult) -> None:
    """Send task_finished to every receiver; one that raises is logged and changes nothing.

    The attempt is over and its outcome decided: a receiver's failure must neither lose the
    report (the job would hang until its lease ran out) nor turn a success into a retry.
    """
    for receiver, response in task_finished.send_robust(JobQueueBackend, task_result=task_result):
        if isinstance(response, Exception):
            logger.error(
                "job %s: task_finished receiver %r raised; the job's outcome stands",
                task_result.id,
                receiver,
                exc_info=response,
            )


def unexpected_failure(job: Assignment, error: BaseException) -> Report:
    """The report of an attempt whose run raised past the executor itself (a bug, or a
    BaseException from where no job code runs): failed, so that it is never left without one."""
    return _failure(job, error, Clock(time.monotonic(), time.time()))


def _failure(job: Assignment, error: BaseException, started: Clock) -> Report:
    if isinstance(error, Snooze):
        return Report(
            job_id=job.job_id,
            kind="snoozed",
            duration=time.monotonic() - started.monotonic,
            started_at=started.wall,
            snooze=error.seconds,
        )
    kind: ReportKind = "cancelled" if isinstance(error, JobCancelled) else "failed"
    return Report(
        job_id=job.job_id,
        kind=kind,
        error=describe_error(error),
        duration=time.monotonic() - started.monotonic,
        started_at=started.wall,
    )
