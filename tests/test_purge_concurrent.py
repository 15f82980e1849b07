"""purge_jobs next to real workers: no job is lost, and large purges go in batches."""

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from jobqueue.models import Job, JobStatus
from tests import tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def insert_finished(n: int, *, days_ago: float) -> None:
    """``n`` finished jobs in one statement, statuses mixed; far faster than the ORM for bulk."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobqueue_job (task, queue, priority, status, args, kwargs, errors,
                progress_message, attempts, max_attempts, cancel_requested,
                created_at, scheduled_at, started_at, finished_at)
            SELECT 'demo.echo', 'default', 0, (ARRAY['succeeded','failed','cancelled'])[1 + i %% 3],
                '[]', '{}', '[]', '', 1, 1, false, t, t, t, t
            FROM generate_series(1, %s) AS i,
                 LATERAL (SELECT now() - make_interval(days => %s) - i * interval '1 ms') AS x(t)
            """,
            [n, days_ago],
        )


def test_purge_while_a_worker_drains_loses_no_job(start_worker, execution_log) -> None:
    insert_finished(20_000, days_ago=30)
    ids = [int(tasks.record.enqueue(n=i).id) for i in range(300)]
    start_worker("--concurrency", "2")
    stop = threading.Event()
    passes: list[str] = []

    def purge_until_stopped() -> None:
        try:
            while not stop.is_set():
                out = StringIO()
                # --older-than 0s: even jobs finished a moment ago are candidates.
                call_command("purge_jobs", "--older-than", "0s", "--batch-size", "500", stdout=out)
                passes.append(out.getvalue())
        finally:
            connection.close()

    purger = threading.Thread(target=purge_until_stopped)
    purger.start()
    try:
        wait_until(lambda: len(execution_log()) >= len(ids), 120, "all 300 jobs ran")
    finally:
        stop.set()
        purger.join(60)

    executed = [row[0] for row in execution_log()]
    assert sorted(executed) == sorted(ids), "every job ran exactly once"
    assert not Job.objects.exclude(status=JobStatus.SUCCEEDED).filter(id__in=ids).exists()
    assert len(passes) >= 1
    assert not Job.objects.exclude(id__in=ids).exists(), "the 20,000 old jobs are gone"


@pytest.mark.django_db(transaction=True)
def test_a_large_purge_goes_in_bounded_batches_and_spares_unfinished_jobs() -> None:
    insert_finished(200_000, days_ago=30)
    keep = tasks.record.enqueue(n=1)
    Job.objects.filter(id=int(keep.id)).update(created_at=timezone.now() - timedelta(days=60))
    out = StringIO()

    call_command("purge_jobs", "--batch-size", "5000", stdout=out)

    assert "deleted 200000 jobs" in out.getvalue() and "in 40 batches" in out.getvalue()
    assert list(Job.objects.values_list("id", flat=True)) == [int(keep.id)]
