"""The API under test: the real ASGI server (gunicorn, uvicorn workers) on the test database."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from jobqueue.api.hub import APP_NAME as HUB_APP_NAME
from jobqueue.models import Job, JobStatus, Worker
from tests.conftest import ROOT, database_url


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP response: status, headers (any case) and the decoded JSON body (or the text)."""

    status: int
    headers: Message
    body: Any


@dataclass(frozen=True, slots=True)
class Server:
    """A running gunicorn; ``call`` sends one request to it."""

    base_url: str

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        timeout: float = 40,
    ) -> Reply:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Token {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(
            self.base_url + path, data=data, headers=all_headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as e:
            return _reply(e.code, e.headers, e.read())


def _reply(status: int, headers: Message, raw: bytes) -> Reply:
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return Reply(status, headers, body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(
    env: dict[str, str], log: Path, threads: int = 8
) -> tuple[subprocess.Popen, str]:
    """gunicorn with the production worker (project.asgi), on a free 127.0.0.1 port.

    ``threads`` is the process's pool for the requests that do not watch a job.
    """
    port = free_port()
    out = log.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "project.asgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "project.asgi_worker.UvicornWorker",
            "--workers",
            "1",
            "--timeout",
            "60",
            # At the end of a test, open event streams are cut after this, not gunicorn's 30 s.
            "--graceful-timeout",
            "2",
        ],
        cwd=ROOT,
        env={**os.environ, "GUNICORN_THREADS": str(threads), **env},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, base_url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gunicorn did not start: {log.read_text(errors='replace')[-3000:]}")


def hub_read_since(moment: datetime) -> bool:
    """Whether a web process's event hub (jobqueue/api/hub.py) has read watched jobs since
    ``moment`` (the database's clock), as pg_stat_activity shows its one connection.

    The hub reads a new watcher's job once the watcher is registered, and otherwise only
    when a watched job changes: a long-poll sent after ``moment`` on a job nothing changes
    is registered and waiting once this is true, so a change from then on wakes it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database() AND state = 'idle' AND query_start >= %s "
            "AND query NOT LIKE 'LISTEN %%')",
            [HUB_APP_NAME, moment],
        )
        return cursor.fetchone()[0]


# The API process's settings in tests: demo tasks exposed, submissions not throttled, and
# one periodic schedule (tests/api/test_schedules.py).
NIGHTLY = {
    "task": "demo.echo",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "queue": "reports",
}
API_ENV = {
    "JOBQUEUE_EXPOSE_DEMO": "1",
    "JOBQUEUE_API_SUBMIT_RATE": "100000/min",
    "JOBQUEUE_PERIODIC": json.dumps({"nightly-report": NIGHTLY}),
}


@pytest.fixture(scope="session")
def api_server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One gunicorn for the session, serving the test database."""
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    proc, base_url = start_gunicorn({**API_ENV, "DATABASE_URL": database_url()}, log)
    yield Server(base_url)
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def api(api_server: Server, transactional_db: None) -> Server:
    """The running API, with committed test data visible to it and wiped after the test."""
    return api_server


@pytest.fixture
def make_user(transactional_db: None) -> Callable[..., tuple[User, str]]:
    """Create a user with an API token: ``make_user("ann", staff=True, perms=["view_job"])``."""
    count = 0

    def make(name: str = "", *, staff: bool = False, perms: tuple[str, ...] = ()) -> tuple:
        nonlocal count
        count += 1
        user = User.objects.create_user(name or f"user{count}", password="pw", is_staff=staff)
        for codename in perms:
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label="jobqueue", codename=codename)
            )
        return user, Token.objects.create(user=user).key

    return make


def jobs_in_every_state(owner: User) -> list[int]:
    """A job of ``owner``'s in every state (queued now, queued for later, running with
    progress, succeeded, failed twice, cancelled), saved; their ids."""
    now = timezone.now()
    worker = Worker.objects.create(hostname="fuzz", pid=1, concurrency=2, queues=[])
    error = {
        "attempt": 1,
        "type": "builtins.ValueError",
        "message": "bad",
        "traceback": "TB",
        "at": now.isoformat(),
        "worker": "fuzz:1",
    }
    made = [
        Job(task="demo.echo", owner=owner, kwargs={"x": 1}),
        Job(
            task="demo.sleep",
            owner=owner,
            scheduled_at=now + timedelta(minutes=5),
            kwargs={"seconds": 1},
        ),
        Job(
            task="demo.progress",
            owner=owner,
            status=JobStatus.RUNNING,
            worker=worker,
            attempts=1,
            started_at=now,
            heartbeat_at=now,
            progress_percent=100 / 6,  # shown rounded: 16.67
            progress_message="step 2 of 5",
            progress_updated_at=now,
        ),
        Job(
            task="demo.echo",
            owner=owner,
            status=JobStatus.SUCCEEDED,
            attempts=1,
            started_at=now - timedelta(seconds=2),
            finished_at=now,
            result={"ok": [1, "é"]},
        ),
        Job(
            task="demo.fail",
            owner=owner,
            status=JobStatus.FAILED,
            attempts=2,
            max_attempts=2,
            started_at=now,
            finished_at=now,
            errors=[error, {**error, "attempt": 2}],
        ),
        Job(
            task="demo.sleep",
            owner=owner,
            status=JobStatus.CANCELLED,
            finished_at=now,
            cancel_requested=True,
            errors=[{**error, "type": "jobqueue.exceptions.JobCancelled", "worker": None}],
        ),
    ]
    for job in made:
        job.save()
    return [job.pk for job in made]
