"""purge_jobs against real PostgreSQL: what goes, what stays, and that it never waits on a lock."""

from datetime import timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from jobqueue.models import Job, JobStatus, Worker
from jobqueue.purge import PurgePlan, purge, purge_ids
from tests.conftest import database_url

pytestmark = pytest.mark.django_db


def make_jobs(n: int, status: str, *, days_ago: float, queue: str = "default") -> list[Job]:
    """``n`` jobs in ``status``; finished ones finished ``days_ago``."""
    at = timezone.now() - timedelta(days=days_ago)
    finished = status in JobStatus.finished()
    return Job.objects.bulk_create(
        Job(
            task="demo.echo",
            queue=queue,
            status=status,
            created_at=at,
            scheduled_at=at,
            started_at=at if status != JobStatus.QUEUED else None,
            finished_at=at if finished else None,
            heartbeat_at=at if status == JobStatus.RUNNING else None,
        )
        for _ in range(n)
    )


def purge_jobs(*args: str) -> str:
    out = StringIO()
    call_command("purge_jobs", *args, stdout=out)
    return out.getvalue()


def test_dry_run_counts_per_status_and_queue_and_deletes_nothing() -> None:
    make_jobs(3, JobStatus.SUCCEEDED, days_ago=10)
    make_jobs(2, JobStatus.FAILED, days_ago=10, queue="reports")
    make_jobs(1, JobStatus.SUCCEEDED, days_ago=1)

    out = purge_jobs("--dry-run")

    assert "would delete 5 jobs" in out
    assert any(line.split() == ["succeeded", "default", "3"] for line in out.splitlines())
    assert any(line.split() == ["failed", "reports", "2"] for line in out.splitlines())
    assert Job.objects.count() == 6


def test_deletes_only_finished_jobs_past_the_retention_setting(settings) -> None:
    settings.JOBQUEUE = {**settings.JOBQUEUE, "RETENTION_DAYS": 7}
    old = make_jobs(2, JobStatus.SUCCEEDED, days_ago=8) + make_jobs(
        1, JobStatus.CANCELLED, days_ago=8
    )
    recent = make_jobs(2, JobStatus.FAILED, days_ago=6)

    out = purge_jobs()

    assert "deleted 3 jobs" in out
    assert set(Job.objects.values_list("id", flat=True)) == {j.id for j in recent}
    assert not Job.objects.filter(id__in=[j.id for j in old]).exists()


def test_older_than_status_and_queue_narrow_the_purge() -> None:
    hour_old_failed = make_jobs(1, JobStatus.FAILED, days_ago=0.1)
    make_jobs(1, JobStatus.SUCCEEDED, days_ago=0.1)
    make_jobs(1, JobStatus.FAILED, days_ago=0.1, queue="other")

    purge_jobs("--older-than", "1h", "--status", "failed", "--queue", "default")

    assert not Job.objects.filter(id=hour_old_failed[0].id).exists()
    assert Job.objects.count() == 2


def test_queued_and_running_jobs_are_never_deleted() -> None:
    queued = make_jobs(2, JobStatus.QUEUED, days_ago=400)
    running = make_jobs(2, JobStatus.RUNNING, days_ago=400)
    # Even a stale finish time left on an unfinished row must not make it a candidate.
    Job.objects.filter(id__in=[j.id for j in queued + running]).update(
        finished_at=timezone.now() - timedelta(days=400)
    )

    out = purge_jobs("--older-than", "0s")

    assert "deleted 0 jobs" in out
    assert Job.objects.count() == 4


def test_deletes_in_batches_of_the_given_size() -> None:
    make_jobs(2500, JobStatus.SUCCEEDED, days_ago=30)

    out = purge_jobs("--batch-size", "1000", "--verbosity", "2")

    assert "deleted 2500 jobs" in out and "in 3 batches" in out
    assert out.count("deleted a batch of") == 3
    assert not Job.objects.exists()


def test_lost_workers_past_the_retention_are_deleted() -> None:
    now = timezone.now()
    old_lost = Worker.objects.create(
        hostname="a", pid=1, concurrency=1, lost_at=now - timedelta(days=9)
    )
    recent_lost = Worker.objects.create(
        hostname="b", pid=2, concurrency=1, lost_at=now - timedelta(days=1)
    )
    live = Worker.objects.create(
        hostname="c", pid=3, concurrency=1, started_at=now - timedelta(days=30)
    )

    assert "would delete 1 workers" in purge_jobs("--dry-run")
    out = purge_jobs()

    assert "deleted 1 workers" in out
    assert set(Worker.objects.values_list("id", flat=True)) == {recent_lost.id, live.id}
    assert old_lost.id not in Worker.objects.values_list("id", flat=True)


@pytest.mark.django_db(transaction=True)
def test_a_row_locked_elsewhere_is_passed_over_not_waited_for() -> None:
    locked, *_others = make_jobs(5, JobStatus.FAILED, days_ago=30)
    with psycopg.connect(database_url()) as other:
        other.execute("SELECT 1 FROM jobqueue_job WHERE id = %s FOR UPDATE", [locked.id])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # a wait would fail, not hang
        try:
            purge_jobs()
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        other.rollback()

    assert list(Job.objects.values_list("id", flat=True)) == [locked.id]


@pytest.mark.parametrize(
    "args",
    [
        ["--status", "queued"],
        ["--status", "succeeded,running"],
        ["--older-than", "7x"],
        ["--older-than", "-1d"],
        ["--batch-size", "0"],
        ["--queue", "bad queue"],
    ],
)
def test_invalid_arguments_are_refused_with_a_message(args: list[str]) -> None:
    make_jobs(1, JobStatus.SUCCEEDED, days_ago=30)
    with pytest.raises(CommandError):
        purge_jobs(*args)
    assert Job.objects.count() == 1


def test_purge_deletes_the_oldest_first() -> None:
    """Rows made newest first, so their ids run against their finish times."""
    made = [make_jobs(1, JobStatus.SUCCEEDED, days_ago=d)[0] for d in (10, 20, 30, 40, 50)]
    newest_first = [j.id for j in made]
    left_after_each_batch: list[list[int]] = []

    def on_batch(rows: int) -> None:
        left_after_each_batch.append(sorted(Job.objects.values_list("id", flat=True)))

    purge(PurgePlan.retention(timedelta(days=1), batch_size=2), on_batch=on_batch)

    assert left_after_each_batch == [
        sorted(newest_first[:3]),
        sorted(newest_first[:1]),
        [],
    ]


def test_the_admin_purge_deletes_only_jobs_still_finished_when_it_runs() -> None:
    """The admin's action selects finished jobs, but one may be retried or claimed before the
    delete runs: the delete itself re-checks each row's status under its lock."""
    queued = make_jobs(1, JobStatus.QUEUED, days_ago=1)
    running = make_jobs(1, JobStatus.RUNNING, days_ago=1)
    done = make_jobs(2, JobStatus.CANCELLED, days_ago=1)

    assert len(purge_ids([j.id for j in queued + running + done])) == 2

    assert set(Job.objects.values_list("id", flat=True)) == {queued[0].id, running[0].id}
