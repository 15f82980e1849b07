"""jobqueue's settings: ``settings.JOBQUEUE`` read into one typed, frozen value."""

from dataclasses import dataclass, field, fields

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueueSettings:
    # Attempts a job gets unless its task says otherwise (1 = no retry).
    DEFAULT_MAX_ATTEMPTS: int = 3
    # Seconds a job may run unless its task says otherwise (None = no limit).
    DEFAULT_TIMEOUT: float | None = 600.0
    # Seconds between a worker's heartbeats.
    HEARTBEAT_INTERVAL: float = 5.0
    # Seconds without a heartbeat after which a worker's running jobs are rescued.
    LEASE: float = 30.0
    # Seconds between claims when no NOTIFY arrives (the fallback).
    POLL_INTERVAL: float = 1.0
    # Seconds a running job may ignore a cancel request before its child is killed;
    # also how long past its timeout a job may run before its child is killed.
    CANCEL_GRACE: float = 10.0
    # Retry delay: BACKOFF_BASE * 2 ** (attempt - 1) seconds, jittered, capped at BACKOFF_MAX.
    BACKOFF_BASE: float = 2.0
    BACKOFF_MAX: float = 3600.0
    # Days a finished job is kept before purge_jobs deletes it.
    RETENTION_DAYS: float = 7.0
    # Largest result a job may store, in bytes of its JSON text: a task that
    # returns more fails with UnstorableResult instead of bloating the row (and
    # every read of it). jsonb itself stops at 256 MiB.
    MAX_RESULT_BYTES: int = 16 * 1024 * 1024
    # The Django database alias of the worker's own connection, which claims, acks,
    # heart-beats and LISTENs. Behind a pooler in transaction mode, name one that
    # reaches PostgreSQL directly: LISTEN needs a session of its own. Through the
    # pooler, the worker still works and finds new jobs by polling (POLL_INTERVAL).
    LISTEN_DATABASE: str = "default"
    # Dotted paths of the tasks that REST clients may submit.
    API_TASKS: list[str] = field(default_factory=list)
    # Periodic jobs by schedule name: {"task": dotted path, "cron": "0 3 * * *" or
    # "@daily", optional "args", "kwargs", "queue", "priority", "timezone" (default
    # UTC) and "catch_up" (missed ticks enqueued after downtime, newest first; 1).
    # Checked at start by the system checks (jobqueue/scheduling/periodic.py reads them).
    PERIODIC: dict[str, dict] = field(default_factory=dict)
    # Execution modes (jobqueue/worker/execution.py): each child's slots for
    # async-mode jobs and thread-mode jobs (runworker --async-slots/--threads
    # override them), and the mode of each queue's jobs whose task names none.
    ASYNC_SLOTS: int = 100
    THREADS: int = 16
    QUEUE_EXECUTION: dict[str, str] = field(default_factory=dict)
    # Limits shared by every worker on every host, per queue (jobqueue/scheduling/limits.py):
    # {"reports": {"concurrency": 2}, "mail": {"rate": "10/s"}}. "concurrency" caps
    # the queue's jobs running at once; "rate" caps its starts in any window ("N/s",
    # "N/min", "N/h" or "N/<seconds>s"). Staff may override them in the admin.
    QUEUES: dict[str, dict] = field(default_factory=dict)
    # Watchers (event streams and ?wait= long-polls) one user may hold open at once in
    # one web process; beyond it the API answers 429.
    WATCH_PER_USER: int = 50
    # Watchers one web process holds at most, all users together; beyond it 503.
    WATCH_MAX: int = 20_000
    # Seconds between keep-alive comments on an idle event stream (proxies close silent ones).
    WATCH_KEEPALIVE: float = 15.0
    # Changes a watcher may fall behind by before it is dropped (its stream closed; the
    # client reconnects with Last-Event-ID and gets the latest state at once).
    WATCH_BUFFER: int = 64
    # Seconds a write to a watcher may wait for the client to read before it is dropped.
    WATCH_SEND_TIMEOUT: float = 10.0

    def __post_init__(self) -> None:
        if self.DEFAULT_MAX_ATTEMPTS < 1:
            raise ValueError(
                f"DEFAULT_MAX_ATTEMPTS must be at least 1, got {self.DEFAULT_MAX_ATTEMPTS}"
            )
        for name in (
            "HEARTBEAT_INTERVAL", "LEASE", "POLL_INTERVAL", "BACKOFF_BASE", "MAX_RESULT_BYTES",
            "WATCH_PER_USER", "WATCH_MAX", "WATCH_KEEPALIVE", "WATCH_BUFFER", "WATCH_SEND_TIMEOUT",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("ASYNC_SLOTS", "THREADS"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for queue, mode in self.QUEUE_EXECUTION.items():
            if mode not in ("process", "thread", "async"):
                raise ValueError(
                    f"QUEUE_EXECUTION[{queue!r}] must be process, thread or async, got {mode!r}"
                )
        from jobqueue.scheduling.limits import QueueLimitSpec  # the parser lives with the limits

        for queue, options in self.QUEUES.items():
            QueueLimitSpec.from_setting(queue, options)
        # A worker stops its jobs once no heartbeat has succeeded for 4/5 of the
        # lease (self-fencing, worker/fence.py); that must span two heartbeats, or
        # one late beat would stop every job.
        if self.LEASE * 0.8 < 2 * self.HEARTBEAT_INTERVAL:
            raise ValueError(
                f"LEASE ({self.LEASE}) must be at least 2.5 x HEARTBEAT_INTERVAL "
                f"({self.HEARTBEAT_INTERVAL}): a worker stops its jobs when no heartbeat "
                "has succeeded for 4/5 of the lease"
            )


_KNOWN = {f.name for f in fields(JobQueueSettings)}
_cached: JobQueueSettings | None = None


def get_settings() -> JobQueueSettings:
    """The current settings, read once and again after a setting changes (tests)."""
    global _cached
    if _cached is None:
        given = getattr(settings, "JOBQUEUE", {})
        unknown = set(given) - _KNOWN
        if unknown:
            raise ValueError(f"unknown JOBQUEUE settings: {', '.join(sorted(unknown))}")
        _cached = JobQueueSettings(**given)
    return _cached


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: object) -> None:
    global _cached
    if setting == "JOBQUEUE":
        _cached = None
