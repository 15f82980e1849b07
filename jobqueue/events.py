"""Job events: one log record per state change of a job, on the logger ``jobqueue.events``.

Every record carries its fields as attributes (``event``, ``job_id``, ``task``,
``queue``, ``attempt``, and where known ``worker``, ``duration``, ``wait``,
``error_class``, ``error_message``), so the JSON formatter (``LOG_FORMAT=json``,
see jobqueue/logs.py) writes each as one object a log pipeline can query,
while the plain format reads as a sentence. The events, in a job's order:
enqueued, claimed, started, then succeeded, failed, retried or cancelled; and
rescued or given_back when its worker was lost or stopped.
"""

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction

logger = logging.getLogger("jobqueue.events")


def job_event(
    event: str,
    *,
    job_id: int,
    task: str | None,
    queue: str | None,
    attempt: int | None,
    **fields: Any,
) -> None:
    """Log one state change of job ``job_id``; fields that are None are left out."""
    if not logger.isEnabledFor(logging.INFO):
        return
    extra = {"event": event, "job_id": job_id, "task": task, "queue": queue, "attempt": attempt}
    extra.update((k, v) for k, v in fields.items() if v is not None)
    logger.info(
        "job %s %s (%s on %s, attempt %s)", job_id, event, task, queue, attempt, extra=extra
    )


def enqueued(using: str, task: str, queue: str, scheduled_at: datetime, ids: Iterable[int]) -> None:
    """'enqueued' for each job of ``ids``, once the caller's transaction has committed them."""
    if not logger.isEnabledFor(logging.INFO):
        return
    due = scheduled_at.isoformat()

    def log() -> None:
        for job_id in ids:
            job_event(
                "enqueued", job_id=job_id, task=task, queue=queue, attempt=0, scheduled_at=due
            )

    transaction.on_commit(log, using=using)
