"""The hot-path statements against real PostgreSQL, each race order forced with a held row lock."""

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from django.tasks import task_backends
from django.utils import timezone

import demo
from jobqueue import db, queries
from jobqueue.models import BULK_BATCH, Job, JobStatus, Worker
from tests.conftest import behind_a_row_lock, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def job(pk: int | str) -> Job:
    return Job.objects.get(pk=int(pk))


def worker() -> int:
    return Worker.objects.create(hostname="h", pid=1, concurrency=1).pk


def claim(cursor, worker: int, demand: int = 1) -> list[tuple]:
    """Claim and read the rows (the worker pipelines the two halves with an ack)."""
    queries.claim(cursor, worker=worker, demand=demand, queues=[])
    return queries.claimed(cursor)


def outcome(job_id: int, token: int, result: str) -> tuple:
    """An ack row: (id, token, status, result, error, scheduled_at, started_at)."""
    return (job_id, token, "succeeded", result, None, None, None)


def test_a_claim_skips_a_row_locked_elsewhere_instead_of_waiting():
    """SKIP LOCKED: while another transaction holds the first job, the claim takes the next
    one at once. A plain FOR UPDATE would wait here, and the lock timeout fails it."""
    first, second = demo.echo.enqueue(), demo.echo.enqueue()
    with psycopg.connect(database_url()) as holder, db.connect() as conn:
        holder.execute("SELECT 1 FROM jobqueue_job WHERE id = %s FOR UPDATE", [int(first.id)])
        conn.execute("SET lock_timeout = '2s'")
        with conn.cursor() as cursor:
            rows = claim(cursor, worker())
        holder.rollback()
    assert [row[0] for row in rows] == [int(second.id)]
    assert job(first.id).status == JobStatus.QUEUED


def test_an_outcome_is_recorded_only_by_the_attempt_that_holds_the_job():
    """A job rescued from attempt 1 and claimed again (by another worker, or the same one):
    attempt 1's late outcome carries the old fencing token and must not touch it."""
    result = demo.echo.using(max_attempts=3).enqueue()
    a, b = worker(), worker()
    with db.connect() as conn, conn.cursor() as cursor:
        [first] = claim(cursor, a)
        Job.objects.filter(pk=result.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
        assert [r[1] for r in queries.rescue(cursor, lease=30)] == ["queued"]
        [second] = claim(cursor, a)  # the same worker, as after a stall
        queries.ack(cursor, worker=a, worker_name="a", outcomes=[outcome(first[0], first[-1], "1")])
        assert queries.acked(cursor) == set()
        taken = job(result.id)
        assert (taken.status, taken.attempts, taken.result) == (JobStatus.RUNNING, 2, None)
        queries.ack(
            cursor, worker=b, worker_name="b", outcomes=[outcome(second[0], second[-1], "2")]
        )
        assert queries.acked(cursor) == {int(result.id)}
    assert (job(result.id).status, job(result.id).result) == (JobStatus.SUCCEEDED, 2)


def running_job(*, attempts: int, max_attempts: int, heartbeat_age: float, **fields) -> Job:
    now = timezone.now()
    return Job.objects.create(
        task="demo.echo",
        status=JobStatus.RUNNING,
        attempts=attempts,
        max_attempts=max_attempts,
        started_at=now - timedelta(seconds=heartbeat_age),
        heartbeat_at=now - timedelta(seconds=heartbeat_age),
        worker_id=worker(),
        **fields,
    )


def test_rescue_requeues_fails_or_cancels_by_attempts_and_cancel_request():
    """A job whose lease ran out: re-queued with attempts left, else failed with WorkerLost;
    cancelled if its cancellation was requested. A job within its lease is left alone."""
    retried = running_job(attempts=1, max_attempts=3, heartbeat_age=60)
    exhausted = running_job(attempts=3, max_attempts=3, heartbeat_age=60)
    cancelled = running_job(attempts=1, max_attempts=3, heartbeat_age=60, cancel_requested=True)
    alive = running_job(attempts=1, max_attempts=3, heartbeat_age=1)
    with db.connect() as conn, conn.cursor() as cursor:
        rescued = {row[0]: row[1] for row in queries.rescue(cursor, lease=30)}

    assert rescued == {retried.pk: "queued", exhausted.pk: "failed", cancelled.pk: "cancelled"}
    for rescued_job in (retried, exhausted, cancelled):
        [error] = job(rescued_job.pk).errors
        assert error["type"] == "jobqueue.exceptions.WorkerLost"
        assert "stopped heart-beating" in error["message"]
    assert job(exhausted.pk).finished_at is not None
    assert job(retried.pk).worker_id is None and job(retried.pk).finished_at is None
    assert job(alive.pk).status == JobStatus.RUNNING


def test_a_heartbeat_renews_the_lease_of_the_workers_jobs():
    """A job running longer than the lease is not rescued while its worker beats."""
    result = demo.echo.enqueue()
    me = worker()
    with db.connect() as conn, conn.cursor() as cursor:
        [row] = claim(cursor, me)
        held = [(row[0], row[-1])]
        Job.objects.filter(pk=result.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
        assert queries.heartbeat(cursor, worker=me, jobs=held) == (True, {row[0]}, set())
        assert queries.rescue(cursor, lease=30) == []
        Job.objects.filter(pk=result.id).update(cancel_requested=True)
        assert queries.heartbeat(cursor, worker=me, jobs=held) == (True, {row[0]}, {row[0]})
    assert job(result.id).status == JobStatus.RUNNING


def test_a_heartbeat_renews_only_the_attempts_in_hand():
    """A job claimed again since (another token) is not renewed, nor reported as held."""
    result = demo.echo.enqueue()
    me = worker()
    with db.connect() as conn, conn.cursor() as cursor:
        [row] = claim(cursor, me)
        stale = timezone.now() - timedelta(hours=1)
        Job.objects.filter(pk=result.id).update(heartbeat_at=stale, lease_token=row[-1] + 1)
        assert queries.heartbeat(cursor, worker=me, jobs=[(row[0], row[-1])]) == (
            True,
            set(),
            set(),
        )
    assert job(result.id).heartbeat_at == stale


def test_shutdown_gives_a_job_back_with_its_attempt_refunded():
    result = demo.echo.enqueue()
    me = worker()
    with db.connect() as conn, conn.cursor() as cursor:
        [row] = claim(cursor, me)
        assert job(result.id).attempts == 1
        queries.give_back(cursor, worker_name="me", jobs=[(row[0], row[-1])])
    given_back = job(result.id)
    assert (given_back.status, given_back.attempts, given_back.worker_id) == ("queued", 0, None)


def test_claim_order_is_priority_then_schedule_then_creation():
    now = timezone.now()
    low_1 = demo.echo.using(priority=0).enqueue()
    low_old = demo.echo.using(priority=0, run_after=now - timedelta(hours=1)).enqueue()
    high = demo.echo.using(priority=50).enqueue()
    later = demo.echo.using(priority=99, run_after=now + timedelta(hours=1)).enqueue()
    me = worker()
    order = []
    with db.connect() as conn, conn.cursor() as cursor:
        while rows := claim(cursor, me):
            order.append(rows[0][0])
    assert order == [int(high.id), int(low_old.id), int(low_1.id)]
    assert job(later.id).status == JobStatus.QUEUED, "a job is not claimed before it is due"


def test_a_give_back_of_an_attempt_that_lost_its_job_changes_nothing():
    """Shutdown gives back by (id, token): a job rescued and claimed again meanwhile stays
    with the attempt that holds it now."""
    result = demo.echo.using(max_attempts=3).enqueue()
    me = worker()
    with db.connect() as conn, conn.cursor() as cursor:
        [first] = claim(cursor, me)
        Job.objects.filter(pk=result.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
        queries.rescue(cursor, lease=30)
        [second] = claim(cursor, me)
        assert queries.give_back(cursor, worker_name="me", jobs=[(first[0], first[-1])]) == []
    held = job(result.id)
    assert (held.status, held.attempts, held.lease_token) == (JobStatus.RUNNING, 2, second[-1])


# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more, and the refusal rolls the
# whole statement back. 1,500 ids of seven digits make 12,000 bytes in one payload.
MANY = 1500


@pytest.fixture
def many_jobs() -> list[int]:
    """MANY queued jobs with ids of seven digits, as a busy production table has."""
    with db.connect() as conn:
        conn.execute("SELECT setval(pg_get_serial_sequence('jobqueue_job', 'id'), 1000000)")
    backend = task_backends["default"]
    return sorted(int(r.id) for r in backend.enqueue_many(demo.echo, [((), {})] * MANY))


class EventsListener:
    """A connection LISTENing on the events channel, as the API's long-poll does."""

    def __init__(self) -> None:
        self.conn = psycopg.connect(database_url(), autocommit=True)
        self.conn.execute(f"LISTEN {queries.EVENTS_CHANNEL}")

    def announced(self, expected: set[int]) -> set[int]:
        """The ids announced until ``expected`` all were (or 30 s passed)."""
        seen: set[int] = set()
        for notify in self.conn.notifies(timeout=30, stop_after=None):
            assert len(notify.payload.encode()) < 8000
            seen |= {int(i) for i in notify.payload.split(",")}
            if expected <= seen:
                break
        return seen


@pytest.fixture
def listener() -> Iterator[EventsListener]:
    events = EventsListener()
    yield events
    events.conn.close()


def test_cancel_and_retry_of_more_jobs_than_one_notify_can_name(many_jobs, listener):
    """An admin's "select all, cancel" over a backlog, then "retry": each changes every job
    and announces every id, in payloads the database accepts."""
    with db.connect() as conn, conn.cursor() as cursor:
        assert sorted(queries.cancel(cursor, many_jobs)) == many_jobs
    assert listener.announced(set(many_jobs)) >= set(many_jobs)
    assert Job.objects.filter(status=JobStatus.CANCELLED).count() == MANY

    with db.connect() as conn, conn.cursor() as cursor:
        assert sorted(queries.retry(cursor, many_jobs)) == many_jobs
    assert listener.announced(set(many_jobs)) >= set(many_jobs)
    assert Job.objects.filter(status=JobStatus.QUEUED, attempts=0).count() == MANY


def test_a_give_back_of_more_jobs_than_one_notify_can_name(many_jobs, listener):
    """A worker holding that many jobs at shutdown gives every one back, attempt refunded,
    instead of leaving them to wait out the lease and be charged as lost."""
    me = worker()
    with db.connect() as conn, conn.cursor() as cursor:
        rows = claim(cursor, me, demand=MANY)
        assert len(rows) == MANY
        listener.announced(set(many_jobs))  # the claim's own announcements
        given = queries.give_back(
            cursor, worker_name="me", jobs=[(r.id, r.lease_token) for r in rows]
        )
    assert sorted(given) == many_jobs
    assert listener.announced(set(many_jobs)) >= set(many_jobs)
    assert Job.objects.filter(status=JobStatus.QUEUED, attempts=0, worker_id=None).count() == MANY


def test_after_a_reconnect_a_lost_claim_of_many_jobs_is_given_back_and_cancel_wins(
    many_jobs, listener
):
    """A claim whose answer was lost, then a cancel of some of its jobs, then the worker's
    reconnect: the jobs it never got go back to the queue, announced, except the cancelled
    ones, which end cancelled and are never claimed again."""
    me = worker()
    with db.connect() as conn, conn.cursor() as cursor:
        assert len(claim(cursor, me, demand=MANY)) == MANY
        listener.announced(set(many_jobs))
        cancelled = many_jobs[:10]
        assert sorted(queries.cancel(cursor, cancelled)) == cancelled
        listener.announced(set(cancelled))
        given = queries.give_back_unknown(cursor, worker=me, worker_name="me", known_tokens=[])
        assert sorted(given) == many_jobs
        assert listener.announced(set(many_jobs)) >= set(many_jobs)
        again = claim(cursor, me, demand=MANY)
    assert {r.id for r in again} == set(many_jobs) - set(cancelled)
    stopped = Job.objects.filter(pk__in=cancelled)
    assert {j.status for j in stopped} == {JobStatus.CANCELLED}
    assert all(j.errors[-1]["type"] == "jobqueue.exceptions.JobCancelled" for j in stopped)
    assert all(j.finished_at is not None for j in stopped)


def test_a_bulk_cancel_commits_batch_by_batch(many_jobs):
    """A "select all, cancel" over a backlog holds no row lock for the whole selection: each
    batch of BULK_BATCH jobs commits on its own, so a worker's heartbeat of a running job
    among them waits one batch at most. Forced order: a lock held on the oldest job (in
    the last batch) stops the cancel there, while the batches before it are committed."""
    with behind_a_row_lock(many_jobs[0], lambda: Job.objects.all().cancel()) as (_, changed):
        with psycopg.connect(database_url(), autocommit=True) as reader:
            [(committed,)] = reader.execute(
                "SELECT count(*) FROM jobqueue_job WHERE status = 'cancelled'"
            ).fetchall()
        assert committed == BULK_BATCH, "the batches before the lock are committed"
    assert [sorted(c) for c in changed] == [many_jobs]
    assert Job.objects.filter(status=JobStatus.CANCELLED).count() == MANY
