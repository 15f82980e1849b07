"""The columns of a new queued job that come from its Task alone, not its arguments.

One function for both ways a job is made: the backend's enqueue (jobqueue/backend.py)
and a periodic schedule's tick (jobqueue/scheduling/periodic.py). It lives apart from
the backend so that periodic.py need not reach into the backend's private methods.
"""

from datetime import datetime
from typing import NamedTuple

from django.tasks.base import Task
from django.utils import timezone

from jobqueue.conf import get_settings


class SharedFields(NamedTuple):
    """The columns of a new queued job that do not depend on its arguments (INSERT order)."""

    task: str
    queue: str
    priority: int
    max_attempts: int
    timeout_seconds: float | None
    created_at: datetime
    scheduled_at: datetime


def shared_fields(task: Task) -> SharedFields:
    """The columns of a new queued job for ``task`` that do not depend on its arguments."""
    conf = get_settings()
    now = timezone.now()
    return SharedFields(
        task=task.module_path,
        queue=task.queue_name,
        priority=task.priority,
        max_attempts=getattr(task, "max_attempts", None) or conf.DEFAULT_MAX_ATTEMPTS,
        timeout_seconds=getattr(task, "timeout", None) or conf.DEFAULT_TIMEOUT,
        created_at=now,
        scheduled_at=task.run_after or now,
    )
