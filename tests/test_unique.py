"""Unique jobs: one live job per key, enforced by the database, under concurrent enqueuers
(threads and processes, single and enqueue_many) and over the API."""

import os
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection, transaction
from django.tasks import task_backends
from django.tasks.base import TaskResultStatus
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

import demo
from jobqueue.models import Job, JobStatus
from tests.conftest import ROOT, database_url

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
