"""The API under test: a real gunicorn serving the project against the test database."""

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
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token

from tests.conftest import ROOT, database_url


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP response: status, headers and the decoded JSON body (or the raw text)."""

    status: int
    headers: dict[str, str]
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
                return _reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as e:
            return _reply(e.code, dict(e.headers), e.read())


def _reply(status: int, headers: dict[str, str], raw: bytes) -> Reply:
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
    """gunicorn with the recommended gthread worker, on a free 127.0.0.1 port."""
    port = free_port()
    out = log.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            "1",
            "--threads",
            str(threads),
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
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
