"""README promises of the API that had no guard: health when the database is down, and the
estimated wait's null and floor."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from jobqueue.models import Job, JobStatus, Worker
from tests.api.conftest import API_ENV, Server, free_port, start_gunicorn


def test_health_answers_503_when_the_database_is_down(tmp_path: Path) -> None:
    """A gunicorn whose database answers nowhere: health says so with 503, at once."""
    dead = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
    proc, base_url = start_gunicorn(
        {**API_ENV, "DATABASE_URL": dead}, tmp_path / "gunicorn.log", threads=2
    )
    try:
        reply = Server(base_url).call("GET", "/api/health/", timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert reply.status == 503, reply.body
    assert reply.body["status"] == "unavailable" and reply.body["database"]["ok"] is False


def finished(user, queue: str, seconds: float, *, minutes_ago: float = 0) -> None:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    Job.objects.create(
        task="demo.echo",
        owner=user,
        queue=queue,
        status=JobStatus.SUCCEEDED,
        started_at=at - timedelta(seconds=seconds),
        finished_at=at,
    )


def estimate(user, job: Job) -> float | None:
    client = APIClient()
    client.force_authenticate(user)
    reply = client.get(f"/api/jobs/{job.pk}/")
    assert reply.status_code == 200, reply.content
    return reply.json()["estimated_wait_seconds"]


@pytest.mark.django_db
def test_estimated_wait_is_null_without_a_worker_for_the_queue_or_recent_durations(make_user):
    user, _ = make_user()
    Worker.objects.create(hostname="h", pid=1, concurrency=2, queues=["served"])
    # Served, but nothing of the queue finished within the hour (only a day ago).
    finished(user, "served", 10, minutes_ago=24 * 60)
    Job.objects.create(task="demo.echo", owner=user, queue="served")
    second = Job.objects.create(task="demo.echo", owner=user, queue="served")
    assert estimate(user, second) is None
    # Recent durations, but no live worker serves the queue.
    finished(user, "unserved", 10)
    Job.objects.create(task="demo.echo", owner=user, queue="unserved")
    behind = Job.objects.create(task="demo.echo", owner=user, queue="unserved")
    assert estimate(user, behind) is None
    # A lost worker does not count either.
    Worker.objects.create(
        hostname="h", pid=2, concurrency=4, queues=["unserved"], lost_at=timezone.now()
    )
    assert estimate(user, behind) is None


@pytest.mark.django_db
def test_estimated_wait_is_never_less_than_the_time_until_the_job_is_due(make_user):
    user, _ = make_user()
    Worker.objects.create(hostname="h", pid=1, concurrency=2, queues=["later"])
    finished(user, "later", 1)
    Job.objects.create(task="demo.echo", owner=user, queue="later")
    delayed = Job.objects.create(
        task="demo.echo",
        owner=user,
        queue="later",
        scheduled_at=timezone.now() + timedelta(seconds=120),
    )
    first = Job.objects.create(
        task="demo.echo",
        owner=user,
        queue="later",
        priority=5,
        scheduled_at=timezone.now() + timedelta(seconds=300),
    )
    # One ready job ahead at 1 s / 2 workers would be 0.5 s: the floor is its due time.
    assert 115 <= estimate(user, delayed) <= 120
    # First in line (nothing ready ahead of it) but not due for five minutes.
    assert 295 <= estimate(user, first) <= 300
