"""Deleting finished jobs in small batches, so that cleanup never stalls the workers.

Each batch is one short statement in its own transaction (autocommit), which
locks at most ``batch_size`` finished rows that no worker wants; queued and
running jobs are never candidates. ``purge_jobs`` and the admin's purge
action both come through here.
"""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from jobqueue import queries
from jobqueue.conf import get_settings
from jobqueue.models import FINISHED

# The keyset's starting point: before any job finished.
EPOCH_START = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgePlan:
    """Which jobs to delete: finished before ``before``, in ``statuses``, optionally one queue."""

    before: datetime
    statuses: tuple[str, ...] = tuple(FINISHED)
    queue: str | None = None
    batch_size: int = 1000

    def __post_init__(self) -> None:
        if not self.statuses:
            raise ValueError("statuses must name at least one finished status")
        if unfinished := set(self.statuses) - set(FINISHED):
            raise ValueError(
                f"purge deletes finished jobs only, not {', '.join(sorted(unfinished))}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    @classmethod
    def retention(cls, older_than: timedelta | None = None, **kwargs: object) -> "PurgePlan":
        """A plan for jobs older than ``older_than``, by default the RETENTION_DAYS setting."""
        if older_than is None:
            older_than = timedelta(days=get_settings().RETENTION_DAYS)
        return cls(before=timezone.now() - older_than, **kwargs)  # type: ignore[arg-type]

    def params(self) -> dict[str, Any]:
        return {"before": self.before, "statuses": list(self.statuses), "queue": self.queue}


@dataclass(slots=True)
class PurgeReport:
    """What a purge deleted (or, for a dry run, would delete)."""

    jobs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, queue) -> rows
    workers: int = 0
    batches: int = 0

    @property
    def total(self) -> int:
        return sum(self.jobs.values())


def count(plan: PurgePlan) -> PurgeReport:
    """What ``purge(plan)`` would delete now, without deleting anything."""
    report = PurgeReport()
    with connection.cursor() as cursor:
        cursor.execute(queries.PURGE_COUNT, plan.params())
        for status, queue, rows in cursor.fetchall():
            report.jobs[status, queue] = rows
        cursor.execute(queries.COUNT_LOST_WORKERS, {"before": plan.before})
        report.workers = cursor.fetchone()[0]
    return report


def purge(plan: PurgePlan, on_batch: Callable[[int], None] | None = None) -> PurgeReport:
    """Delete the jobs of ``plan`` batch by batch, then the workers lost before its cutoff
    and the health page's backlog samples older than two days."""
    report = PurgeReport()
    after_at, after_id = EPOCH_START, 0
    while True:
        rows = _delete_batch(plan, after_at, after_id)
        if not rows:
            break
        report.batches += 1
        report.jobs.update((status, queue) for _, _, status, queue in rows)
        after_at, after_id = max((finished_at, id_) for finished_at, id_, _, _ in rows)
        if on_batch is not None:
            on_batch(len(rows))
        if len(rows) < plan.batch_size:
            break
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(queries.PURGE_LOST_WORKERS, {"before": plan.before})
        report.workers = cursor.rowcount
        cursor.execute(queries.PRUNE_SAMPLES)  # the health page's backlog samples
    return report


def purge_ids(ids: Sequence[int], batch_size: int = 1000) -> list[tuple[int, str, str]]:
    """Delete the finished jobs among ``ids`` (the admin's purge action).

    Returns ``(id, task, status)`` of each job deleted, for the admin's audit trail.
    """
    deleted: list[tuple[int, str, str]] = []
    for start in range(0, len(ids), batch_size):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(queries.PURGE_IDS, {"ids": list(ids[start : start + batch_size])})
            deleted += cursor.fetchall()
    return deleted


def _delete_batch(plan: PurgePlan, after_at: datetime, after_id: int) -> list[tuple]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            queries.PURGE_BATCH,
            {**plan.params(), "after_at": after_at, "after_id": after_id, "limit": plan.batch_size},
        )
        return cursor.fetchall()
