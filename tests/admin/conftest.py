"""Users with and without jobqueue's permissions, and jobs in every state."""

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from jobqueue.models import Job, JobStatus, Worker


@pytest.fixture
def staff_client(db: None) -> Callable[..., Client]:
    """A logged-in client for a staff user holding exactly the given job permissions."""

    def make(*codenames: str, username: str = "staff") -> Client:
        user = User.objects.create_user(username, password="pw", is_staff=True)
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="jobqueue", codename__in=codenames)
        )
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def jobs(db: None) -> dict[str, Job]:
    """One job per status, a failed one with two attempts' errors, and a worker."""
    now = timezone.now()
    worker = Worker.objects.create(hostname="host-a", pid=11, concurrency=2)
    lost = Worker.objects.create(
        hostname="host-b",
        pid=12,
        concurrency=1,
        lost_at=now,
        last_heartbeat=now - timedelta(hours=1),
    )
    error = {
        "type": "builtins.RuntimeError",
        "traceback": "Traceback (most recent call last):\n  x",
    }
    made = {
        "queued": Job(task="demo.echo", queue="default", kwargs={"a": 1}),
        "running": Job(
            task="demo.sleep",
            queue="reports",
            status=JobStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
            progress_percent=40,
            progress_message="slept 4 of 10 s",
            attempts=1,
        ),
        "succeeded": Job(
            task="demo.echo",
            status=JobStatus.SUCCEEDED,
            started_at=now - timedelta(seconds=3),
            finished_at=now,
            result={"answer": 42},
            attempts=1,
        ),
        "failed": Job(
            task="demo.fail",
            status=JobStatus.FAILED,
            started_at=now,
            finished_at=now,
            attempts=2,
            max_attempts=2,
            errors=[
                {**error, "attempt": 1, "message": "first disk full", "at": now.isoformat()},
                {**error, "attempt": 2, "message": "second disk full", "at": now.isoformat()},
            ],
        ),
        "cancelled": Job(
            task="demo.sleep",
            queue="reports",
            status=JobStatus.CANCELLED,
            finished_at=now,
            cancel_requested=True,
        ),
    }
    for job in made.values():
        job.save()
    made["lost_worker"] = lost  # type: ignore[assignment]
    return made
