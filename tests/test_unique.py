"""Unique jobs: one live job per key, enforced by the database, under concurrent enqueuers
(threads and processes, single and enqueue_many) and over the API."""

import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from django.db import connection, transaction
from django.tasks import task_backends
from django.tasks.base import TaskResultStatus
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

import demo
from jobqueue import queries
from jobqueue.models import Job, JobStatus
from tests.conftest import ROOT, behind_a_row_lock, database_url, wait_until, waits_for_lock_of

pytestmark = pytest.mark.django_db(transaction=True)


def live(key_part: str = "") -> list[Job]:
    return list(
        Job.objects.filter(
            status__in=[JobStatus.QUEUED, JobStatus.RUNNING], unique_key__contains=key_part
        )
    )


def test_a_duplicate_of_a_live_job_returns_that_job():
    first = demo.echo.using(unique_key="report-42").enqueue(n=1)
    again = demo.echo.using(unique_key="report-42").enqueue(n=2)
    assert again.id == first.id and again.status == TaskResultStatus.READY
    assert again.kwargs == {"n": 1}  # the live job's, not the duplicate's
    assert demo.echo.using(unique_key="report-43").enqueue(n=1).id != first.id
    assert Job.objects.count() == 2


def test_unique_true_derives_the_key_from_task_and_arguments():
    a = demo.echo.using(unique=True).enqueue(x=1, y=2)
    assert demo.echo.using(unique=True).enqueue(y=2, x=1).id == a.id  # keyword order
    assert demo.echo.using(unique=True).enqueue(x=1, y=3).id != a.id
    assert demo.echo.enqueue(x=1, y=2).id != a.id  # not unique: not checked
    assert Job.objects.count() == 3


def finish(job_id: str) -> None:
    Job.objects.filter(pk=job_id).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())


def test_a_finished_job_frees_its_key_unless_its_state_is_listed():
    first = demo.echo.using(unique_key="k").enqueue()
    Job.objects.filter(pk=first.id).update(
        status=JobStatus.SUCCEEDED, finished_at=first.enqueued_at
    )
    second = demo.echo.using(unique_key="k").enqueue()
    assert second.id != first.id

    sticky = demo.echo.using(unique_key="s", unique_states=["queued", "running", "succeeded"])
    done = sticky.enqueue()
    finish(done.id)
    assert sticky.enqueue().id == done.id


def test_unique_for_holds_within_its_window_only():
    windowed = demo.echo.using(unique_key="w", unique_for=3600)
    first = windowed.enqueue()
    assert windowed.enqueue().id == first.id
    # The same key in the previous window is another key.
    job = Job.objects.get(pk=first.id)
    bucket = int(job.unique_key.rsplit("@", 1)[1])
    assert bucket == int(job.created_at.timestamp() // 3600)  # the key names its window
    Job.objects.filter(pk=job.pk).update(
        unique_key=job.unique_key.replace(f"@{bucket}", f"@{bucket - 1}")
    )
    assert windowed.enqueue().id != first.id


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique_key": "k", "unique_states": ["running"]}, "must include 'queued' and 'running'"),
        ({"unique_key": "k", "unique_states": ["queued", "running", "odd"]}, "unique_states"),
        ({"unique_key": "k", "unique_for": 0}, "unique_for must be a positive"),
        ({"unique_key": ""}, "unique_key must be 1 to 200"),
    ],
)
def test_bad_unique_options_are_refused(options, message):
    with pytest.raises(InvalidTask, match=message):
        demo.echo.using(**options).enqueue()


def test_enqueue_many_of_a_unique_task_skips_live_keys_and_repeats_within_the_batch():
    live_one = demo.echo.using(unique=True).enqueue(n=0)
    backend = task_backends["default"]
    results = backend.enqueue_many(
        demo.echo.using(unique=True), [((), {"n": n % 3}) for n in range(9)]
    )
    assert results[0].id == live_one.id
    assert [r.id for r in results] == [r.id for r in results[:3]] * 3
    assert Job.objects.count() == 3
    assert results[1].kwargs == {"n": 1} and results[0].kwargs == {"n": 0}


def test_eight_threads_enqueuing_one_key_make_one_live_job():
    """Eight threads, each in its own transaction on its own connection, enqueue the same
    key at once, half with enqueue() and half with enqueue_many(): one job, one id for all."""
    barrier = threading.Barrier(8)
    ids: list[str] = []
    backend = task_backends["default"]
    keyed = demo.echo.using(unique_key="race")

    def enqueue(n: int) -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                if n % 2:
                    ids.append(keyed.enqueue(n=n).id)
                else:
                    ids.extend(r.id for r in backend.enqueue_many(keyed, [((), {"n": n})] * 3))
                time.sleep(0.05)  # hold the key uncommitted while the others collide with it
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(ids) == 4 + 4 * 3
    assert len(set(ids)) == 1
    assert len(live("race")) == 1


ENQUEUER = """
import sys, time
import django
django.setup()
from django.tasks import task_backends
import demo
keyed = demo.echo.using(unique_key="processes")
start = float(sys.argv[1])
time.sleep(max(0, start - time.time()))
if int(sys.argv[2]) % 2:
    print(keyed.enqueue().id)
else:
    for r in task_backends["default"].enqueue_many(keyed, [((), {})] * 2):
        print(r.id)
"""


def test_eight_processes_enqueuing_one_key_make_one_live_job():
    env = {"DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "project.settings"}
    start = time.time() + 4  # every process has booted Django by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ENQUEUER, str(start), str(n)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    ids = [line for out, _ in outputs for line in out.split()]
    assert len(ids) == 4 + 4 * 2
    assert len(set(ids)) == 1
    assert len(live("processes")) == 1


def failed_job(key: str, **options) -> Job:
    """A unique job of ``key`` that failed (its key is free again unless its states say)."""
    result = demo.echo.using(unique_key=key, **options).enqueue(n=1)
    Job.objects.filter(pk=result.id).update(status=JobStatus.FAILED, finished_at=timezone.now())
    return Job.objects.get(pk=result.id)


def test_two_failed_rows_of_one_key_retried_together_put_back_the_newest_only():
    """An admin's "select all, retry" over two failed rows of one key: one goes back (the
    newest), the other stays failed; never an IntegrityError that retries nothing."""
    older, newer = failed_job("k"), failed_job("k")
    plain = Job.objects.get(pk=demo.echo.enqueue(n=1).id)  # no key: nothing to share
    Job.objects.filter(pk=plain.pk).update(status=JobStatus.FAILED, finished_at=timezone.now())
    retried = Job.objects.filter(pk__in=[older.pk, newer.pk, plain.pk]).retry()
    assert sorted(retried) == sorted([newer.pk, plain.pk])
    assert Job.objects.get(pk=older.pk).status == JobStatus.FAILED
    assert [j.pk for j in live("k")] == [newer.pk]


def test_a_unique_job_that_holds_its_key_while_failed_can_be_retried():
    """unique_states with "failed": the failed row holds its key itself, and the retry's
    guard must not take it for another job."""
    other = failed_job("sticky")  # failed, and not holding the key: its states are the default
    job = failed_job("sticky", unique_states=["queued", "running", "failed"])
    plain = Job.objects.get(pk=demo.echo.enqueue(n=1).id)
    Job.objects.filter(pk=plain.pk).update(status=JobStatus.FAILED, finished_at=timezone.now())
    # The key is held, by a failed job: the other row stays, and the rest of the batch goes.
    assert Job.objects.filter(pk__in=[other.pk, plain.pk]).retry() == [plain.pk]
    assert Job.objects.filter(pk=job.pk).retry() == [job.pk]
    assert [j.pk for j in live("sticky")] == [job.pk]


def test_two_concurrent_retries_of_one_key_put_back_one_and_the_other_changes_nothing():
    """Two API retries at once, of two failed rows of one key, each in its own transaction.
    The order is forced: the first holds its retry uncommitted while the second starts."""
    first, second = failed_job("k"), failed_job("k")
    holder = psycopg.connect(database_url())
    try:
        with holder.cursor() as cursor:
            assert queries.retry(cursor, [first.pk]) == [first.pk]  # not committed yet
        outcome: list[object] = []
        racer = threading.Thread(
            target=lambda: outcome.append(_retry_on_own_connection(second.pk)), daemon=True
        )
        racer.start()
        holder_pid = holder.info.backend_pid
        wait_until(lambda: waits_for_lock_of(holder_pid), 30, "the second retry waits")
        holder.commit()
        racer.join(timeout=30)
    finally:
        holder.close()
    assert outcome == [[]], "the second retry sees the key taken and changes nothing"
    assert [j.pk for j in live("k")] == [first.pk]


def test_a_retry_racing_an_enqueue_of_its_key_changes_nothing():
    """An enqueue of the key that commits after the retry's snapshot: the row is one the
    retry cannot see nor lock, so the index refuses the update. The retry is a conflict
    (nothing changed), not an error."""
    old = failed_job("k")
    with behind_a_row_lock(old.pk, lambda: Job.objects.filter(pk=old.pk).retry()) as (_, outcome):
        fresh = demo.echo.using(unique_key="k").enqueue(n=2)
    assert outcome == [[]]
    assert Job.objects.get(pk=old.pk).status == JobStatus.FAILED
    assert [j.pk for j in live("k")] == [int(fresh.id)]


def _retry_on_own_connection(job_id: int) -> list[int]:
    with psycopg.connect(database_url(), autocommit=True) as conn, conn.cursor() as cursor:
        return queries.retry(cursor, [job_id])
