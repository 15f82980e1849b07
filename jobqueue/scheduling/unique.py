"""Unique jobs: the key that makes a job unique, and the statuses in which it holds.

The database enforces it: a partial unique index (migration 0007) covers
``unique_key`` of the rows whose ``status`` is one of their own
``unique_states``. While such a job exists, an insert with the same key is
refused by the index, whichever path it takes (``enqueue``, ``enqueue_many``'s
COPY, the API) and however many enqueuers race; the insert statements turn
that refusal into "return the live job" (``queries.INSERT_UNIQUE_JOB``).
"""

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.tasks.base import Task
from django.tasks.exceptions import InvalidTask

# The statuses a unique job blocks duplicates in unless the task says otherwise.
DEFAULT_STATES = ("queued", "running")
# Every unique_states must hold these: a job must not leave the index while it lives, or a
# duplicate enqueued meanwhile would make its next status change (claim, retry, rescue)
# collide with the duplicate's key.
REQUIRED_STATES = frozenset(DEFAULT_STATES)
FINISHED_STATES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class Uniqueness:
    """What the unique index sees of a job: its key, and the statuses in which it holds."""

    key: str
    states: tuple[str, ...]


def check_options(task: Task) -> None:
    """Raise InvalidTask when the task's unique options make no sense together."""
    unique_key = getattr(task, "unique_key", None)
    states = set(getattr(task, "unique_states", DEFAULT_STATES))
    unique_for = getattr(task, "unique_for", None)
    if unique_key is not None and not 1 <= len(unique_key) <= 200:
        raise InvalidTask(f"unique_key must be 1 to 200 characters, got {len(unique_key)}.")
    if not REQUIRED_STATES <= states <= REQUIRED_STATES | FINISHED_STATES:
        raise InvalidTask(
            "unique_states must include 'queued' and 'running', and may add 'succeeded', "
            f"'failed' or 'cancelled'; got {sorted(states)}."
        )
    if unique_for is not None and not (math.isfinite(unique_for) and unique_for > 0):
        raise InvalidTask(f"unique_for must be a positive number of seconds, got {unique_for}.")


def uniqueness(task: Task, args: Any, kwargs: Any, now: datetime) -> Uniqueness | None:
    """The uniqueness of a job of ``task`` with these arguments enqueued at ``now``, if any.

    An explicit ``unique_key`` is scoped to the task; ``unique=True`` derives the key
    from the task and its arguments (keyword order does not matter). With
    ``unique_for`` the key also names the window of that many seconds (counted from
    the Unix epoch) that ``now`` falls in, so the job is unique within its window.
    """
    unique_key = getattr(task, "unique_key", None)
    if unique_key is not None:
        key = f"{task.module_path}:{unique_key}"
    elif getattr(task, "unique", False):
        canonical = json.dumps([task.module_path, args, kwargs], sort_keys=True)
        key = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    else:
        return None
    if unique_for := getattr(task, "unique_for", None):
        key = f"{key}@{math.floor(now.timestamp() / unique_for)}"
    return Uniqueness(key, tuple(getattr(task, "unique_states", DEFAULT_STATES)))
