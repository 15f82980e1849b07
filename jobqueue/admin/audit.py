"""The admin's audit trail: one Django ``LogEntry`` per job that a staff action changed.

Retry, cancel and purge bypass the ModelAdmin's save and delete (they are
atomic statements against the workers), so Django writes no log for them by
itself. These rows are what the admin's "Recent actions" box and each job's
History page read: who did what to which job, and when.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType

from jobqueue.models import Job, JobStatus

# LogEntry rows are written in batches of this many (a purge of every finished job
# would otherwise build one statement of unbounded size).
BATCH = 1000


def log_retried(user: Any, ids: Iterable[int], where: str) -> None:
    """Log jobs that a retry put back in the queue."""
    _log(user, _rows(ids), CHANGE, lambda status: f"Retried (re-queued) {where}.")


def log_cancelled(user: Any, ids: Iterable[int], where: str) -> None:
    """Log jobs that a cancel changed: queued ones are cancelled, running ones asked to stop."""

    def message(status: str) -> str:
        if status == JobStatus.RUNNING:
            return f"Cancel requested {where}: the running job stops at its next check."
        return f"Cancelled {where}."

    _log(user, _rows(ids), CHANGE, message)


def log_purged(user: Any, rows: Iterable[tuple[int, str, str]], where: str) -> None:
    """Log jobs that a purge deleted, as ``(id, task, status)`` read back from the DELETE."""
    _log(user, rows, DELETION, lambda status: f"Purged ({status}) {where}.")


def _rows(ids: Iterable[int]) -> list[tuple[int, str, str]]:
    """``(id, task, status)`` of the jobs as they are now, after the change."""
    return list(Job.objects.filter(id__in=list(ids)).values_list("id", "task", "status"))


def _log(user: Any, rows: Iterable[tuple[int, str, str]], flag: int, message: Any) -> None:
    content_type = ContentType.objects.get_for_model(Job).pk
    entries = [
        LogEntry(
            user_id=user.pk,
            content_type_id=content_type,
            object_id=str(id_),
            object_repr=str(Job(pk=id_, task=task, status=status))[:200],
            action_flag=flag,
            change_message=message(status),
        )
        for id_, task, status in rows
    ]
    LogEntry.objects.bulk_create(entries, batch_size=BATCH)
