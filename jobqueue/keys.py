"""Concurrency keys: at most N running jobs per key, whatever the queue, worker or host.

``@task(concurrency_key="customer:{customer_id}", concurrency_limit=1)`` gives each
job a key made from its arguments when it is enqueued (a ``str.format`` template of
its keyword and positional arguments, or a callable taking them); at most
``concurrency_limit`` jobs with one key run at once. The key is not scoped to the
task: tasks that produce the same key share its limit (say, every job that writes
one customer's account).

The claim enforces it as it does queue limits (jobqueue/scheduling/limits.py): LOCK_LIMITS
takes a transaction-level advisory lock per key it may claim, in one global order,
and the claim's next statement counts the key's running jobs in a snapshot taken
after the lock (queries.LOCK_LIMITS and queries.CLAIM say who holds what).
"""

from collections.abc import Callable, Sequence
from typing import Any

from django.tasks.base import Task
from django.tasks.exceptions import InvalidTask

MAX_KEY_LENGTH = 500


def check_options(task: Task) -> None:
    """Raise InvalidTask when the task's concurrency options make no sense."""
    key = getattr(task, "concurrency_key", None)
    limit = getattr(task, "concurrency_limit", 1)
    if key is not None and not (isinstance(key, str) and key) and not callable(key):
        raise InvalidTask(f"concurrency_key must be a non-empty string or a callable, got {key!r}.")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidTask(f"concurrency_limit must be an integer from 1 to 10000, got {limit!r}.")


def concurrency_key(task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
    """The key of a job of ``task`` with these arguments, or None if the task has none."""
    spec: str | Callable[..., Any] | None = getattr(task, "concurrency_key", None)
    if spec is None:
        return None
    try:
        key = spec(*args, **kwargs) if callable(spec) else spec.format(*args, **kwargs)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise InvalidTask(f"concurrency_key could not be made from the arguments: {e!r}.") from e
    key = str(key)
    if not 1 <= len(key) <= MAX_KEY_LENGTH or "\x00" in key:
        raise InvalidTask(
            f"concurrency_key must be 1 to {MAX_KEY_LENGTH} characters without NUL, got {key!r}."
        )
    return key
