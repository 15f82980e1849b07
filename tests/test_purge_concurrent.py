"""purge_jobs next to real workers: no job is lost, and large purges go in batches."""

import threading
from collections.abc import Callable, Iterator
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


@pytest.fixture
def deletions(transactional_db: None) -> Iterator[Callable[[], dict[int, str]]]:
    """Every job row deleted while the test runs, with the status it had: a reader."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE TABLE IF NOT EXISTS test_deleted (id bigint, status text);
            TRUNCATE test_deleted;
            CREATE OR REPLACE FUNCTION test_note_deletion() RETURNS trigger AS $$
            BEGIN INSERT INTO test_deleted VALUES (OLD.id, OLD.status); RETURN OLD; END
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_note_deletion BEFORE DELETE ON jobqueue_job
                FOR EACH ROW EXECUTE FUNCTION test_note_deletion();
            """
        )

    def read() -> dict[int, str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, status FROM test_deleted")
            return dict(cursor.fetchall())

    try:
        yield read
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_note_deletion ON jobqueue_job")


def test_purge_while_a_worker_drains_loses_no_job(start_worker, execution_log, deletions) -> None:
    """Purges of everything finished (--older-than 0s) run in a loop while a worker drains
    300 jobs: each job runs exactly once, and every row the purge deletes was finished when
    it went (a trigger notes each deletion with the row's status then)."""
    insert_finished(20_000, days_ago=30)
    ids = [int(tasks.record.enqueue(n=i).id) for i in range(300)]
    start_worker("--concurrency", "2")
    stop = threading.Event()
    passes: list[str] = []

    def purge_until_stopped() -> None:
        try:
            while not stop.is_set():
                out = StringIO()
                call_command("purge_jobs", "--older-than", "0s", "--batch-size", "500", stdout=out)
                passes.append(out.getvalue())
        finally:
            connection.close()

    def drained() -> bool:
        # Done means acknowledged (committed), not only run: a deleted row was checked below.
        return not Job.objects.filter(id__in=ids).exclude(status=JobStatus.SUCCEEDED).exists()

    purger = threading.Thread(target=purge_until_stopped)
    purger.start()
    try:
        wait_until(lambda: len(execution_log()) >= len(ids) and drained(), 120, "all jobs ran")
    finally:
        stop.set()
        purger.join(60)

    executed = [row[0] for row in execution_log()]
    assert sorted(executed) == sorted(ids), "every job ran exactly once"
    deleted = deletions()
    assert set(deleted.values()) <= {"succeeded", "failed", "cancelled"}, "an unfinished row went"
    ours = {i: s for i, s in deleted.items() if i in set(ids)}
    assert set(ours.values()) <= {"succeeded"}
    remaining = set(Job.objects.filter(id__in=ids).values_list("id", flat=True))
    assert remaining | set(ours) == set(ids), "a job vanished without being deleted finished"
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
