"""Paused queues: no claim once a pause has returned, running jobs finish, resume restarts
them; on real PostgreSQL and a real worker, with the pause racing a claim in flight."""

import threading

import psycopg
import pytest
from django.core.management import call_command

import demo
from jobqueue import queries
from jobqueue.models import Job, JobStatus, Worker
from jobqueue.scheduling import pauses
from tests.conftest import database_url, db_now, wait_until, waits_for_lock_of


def in_queue(queue: str):
    return Job.objects.filter(queue=queue)


@pytest.mark.slow
def test_a_paused_queue_gets_no_claim_after_the_pause_and_resumes(start_worker):
    """A worker drains two queues of short jobs. Once pause() has returned, no job of the
    paused queue is claimed (the other queue goes on, jobs claimed before finish, enqueuing
    works); after resume() the rest run."""
    slow = demo.sleep.using(queue_name="incident")
    for _ in range(40):
        slow.enqueue(seconds=0.2)
    start_worker("--concurrency", "2")
    wait_until(
        lambda: in_queue("incident").filter(started_at__isnull=False).exists(), 30, "a start"
    )

    assert pauses.pause("incident", by="test")
    acknowledged = db_now()
    # The pause waited for every claim under way, so this reads every job claimed before it.
    # Those may still start after the pause: a claimed job's started_at becomes the moment
    # its child began it, and a child can begin late (spawning, a busy machine).
    claimed_before = set(
        in_queue("incident").exclude(status=JobStatus.QUEUED).values_list("pk", flat=True)
    )
    late = demo.echo.using(queue_name="incident").enqueue(n=1)  # enqueuing still works
    other = [demo.echo.enqueue(n=n) for n in range(5)]
    wait_until(
        lambda: Job.objects.filter(pk__in=[r.id for r in other], status="succeeded").count() == 5,
        30,
        "the other queue's jobs ran during the pause",
    )
    # No wait is needed here: the claims that took the other queue's jobs came after those
    # were enqueued, so after `late` too, and the older incident jobs come first in claim
    # order: had the pause not held, those claims would have taken them.
    started_after = in_queue("incident").filter(started_at__gt=acknowledged)
    assert not started_after.exclude(pk__in=claimed_before).exists(), "claimed after the pause"
    assert not in_queue("incident").filter(status=JobStatus.RUNNING).exists(), "running ones end"
    assert Job.objects.get(pk=late.id).status == JobStatus.QUEUED
    waiting = in_queue("incident").filter(status=JobStatus.QUEUED).count()
    assert waiting > 1

    assert pauses.resume("incident")
    wait_until(
        lambda: not in_queue("incident").exclude(status=JobStatus.SUCCEEDED).exists(),
        60,
        "the paused queue's jobs ran after resume",
    )


def claim_in(cursor, queue: str) -> list[int]:
    """A worker's claim of ``queue``, its statements in one transaction as the worker's are."""
    worker = Worker.objects.create(hostname="h", pid=1, concurrency=1).pk
    queries.claim(cursor, worker=worker, demand=1, queues=[queue])
    return [row.id for row in queries.claimed(cursor)]


@pytest.mark.django_db(transaction=True)
def test_a_pause_waits_for_a_claim_in_flight_and_holds_back_the_next_one():
    """A claim under way (its transaction not yet committed) holds the pause back until it
    commits; a claim that starts while the pause waits sees the pause."""
    demo.echo.using(queue_name="held").enqueue()
    demo.echo.using(queue_name="other").enqueue()
    with psycopg.connect(database_url(), autocommit=True) as in_flight:
        with in_flight.transaction(), in_flight.cursor() as cursor:
            assert len(claim_in(cursor, "other")) == 1
            pausing = threading.Thread(target=pauses.pause, args=("held",))
            pausing.start()
            wait_until(
                lambda: waits_for_lock_of(in_flight.info.backend_pid),
                15,
                "the pause waits for the claim in flight",
            )
            assert pausing.is_alive()
        pausing.join(timeout=30)
        assert not pausing.is_alive()
        with in_flight.transaction(), in_flight.cursor() as cursor:
            assert claim_in(cursor, "held") == []


@pytest.mark.django_db(transaction=True)
def test_a_pause_behind_an_idle_transaction_holds_back_no_claim():
    """A transaction left idle after reading the pause table (a psql session, pg_dump's
    hours-long ACCESS SHARE): the pause neither waits for it nor makes the claims of any
    queue wait behind it."""
    other = demo.echo.using(queue_name="other").enqueue()
    demo.echo.using(queue_name="held").enqueue()
    with psycopg.connect(database_url()) as idle:
        idle.execute("SELECT count(*) FROM jobqueue_queuepause")  # and then nothing
        pausing = threading.Thread(target=pauses.pause, args=("held",), daemon=True)
        pausing.start()
        pausing.join(timeout=10)  # it waits for nothing: it returns in milliseconds
        assert not pausing.is_alive(), "the pause waited behind the idle transaction"
        with psycopg.connect(database_url(), autocommit=True) as worker:
            worker.execute("SET lock_timeout = '10s'")
            with worker.transaction(), worker.cursor() as cursor:
                assert claim_in(cursor, "other") == [int(other.id)]
            with worker.transaction(), worker.cursor() as cursor:
                assert claim_in(cursor, "held") == []
        idle.rollback()


@pytest.mark.django_db(transaction=True)
def test_the_queues_command_pauses_lists_and_resumes(capsys):
    call_command("queues", "pause", "reports")
    call_command("queues", "pause", "reports")
    call_command("queues", "list")
    call_command("queues", "resume", "reports")
    call_command("queues", "resume", "reports")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "paused reports" and out[1] == "reports was already paused"
    assert out[2].startswith("reports\tpaused since ") and out[2].endswith("by manage.py queues")
    assert out[3:] == ["resumed reports", "reports was not paused"]
    with pytest.raises(Exception, match="not a queue name"):
        call_command("queues", "pause", "no spaces")
