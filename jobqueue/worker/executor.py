"""Runs one attempt of one job inside a child process and reports how it went."""

import json
import signal
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from django.tasks.base import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from jobqueue.backend import JobQueueBackend, load_task
from jobqueue.exceptions import JobCancelled, JobTimeout
from jobqueue.progress import ProgressReporter, set_reporter
from jobqueue.worker.hygiene import ConnectionHygiene
from jobqueue.worker.outcome import Report, ReportKind
from jobqueue.worker.storable import describe_error, encode_result


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

    def as_message(self) -> tuple[Any, ...]:
        """The fields as a plain tuple, which pickles far faster than the dataclass."""
        return (
            self.job_id, self.token, self.task, self.args_json, self.kwargs_json, self.attempts,
            self.timeout,
        )  # fmt: skip

    @property
    def size(self) -> int:
        """The bytes this assignment's text takes on the wire (pickle sends text as UTF-8)."""
        return _utf8_len(self.task) + _utf8_len(self.args_json) + _utf8_len(self.kwargs_json)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


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
    """Executes assignments one at a time; lives as long as its child process."""

    def __init__(self, *, progress_connection: Any, worker_name: str) -> None:
        self.progress_connection = progress_connection
        self.worker_name = worker_name
        self.tasks: dict[str, Task] = {}
        self.clock = JobClock()
        self.hygiene = ConnectionHygiene(progress_connection)
        self.running: int | None = None  # the job being executed: read by the fence's watchdog

    def execute(self, job: Assignment) -> Report:
        """Run one attempt; the report says how it went, whatever the task did."""
        self.running = job.job_id
        try:
            return self._execute(job)
        finally:
            self.running = None

    def _execute(self, job: Assignment) -> Report:
        started = time.monotonic()
        started_at = time.time()
        try:
            task = self._task(job.task)
            args, kwargs = json.loads(job.args_json), json.loads(job.kwargs_json)
        except Exception as e:
            return _failure(job, e, started, started_at)
        task_result = self._task_result(job, task, args, kwargs)
        task_started.send(JobQueueBackend, task_result=task_result)
        set_reporter(
            ProgressReporter(
                job_id=job.job_id, token=job.token, connection=self.progress_connection
            )
        )
        self.clock.start(job.timeout)
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=task_result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            self.clock.stop()
            self.hygiene.reset()  # before task_finished's receivers use a connection
            result_json = encode_result(value)
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            self.clock.stop()
            self.hygiene.reset()  # a timeout may have landed inside a query
            report = _failure(job, e, started, started_at)
            object.__setattr__(task_result, "status", TaskResultStatus.FAILED)
            task_finished.send(JobQueueBackend, task_result=task_result)
            return report
        finally:
            set_reporter(None)
        object.__setattr__(task_result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(task_result, "finished_at", timezone.now())
        task_finished.send(JobQueueBackend, task_result=task_result)
        return Report(
            job_id=job.job_id,
            kind="succeeded",
            result_json=result_json,
            duration=time.monotonic() - started,
            started_at=started_at,
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


def _failure(job: Assignment, error: BaseException, started: float, started_at: float) -> Report:
    kind: ReportKind = "cancelled" if isinstance(error, JobCancelled) else "failed"
    return Report(
        job_id=job.job_id,
        kind=kind,
        error=describe_error(error),
        duration=time.monotonic() - started,
        started_at=started_at,
    )
