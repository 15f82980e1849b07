"""Probes: /api/health/?ready=1 (readiness, with the migrations) and manage.py worker_status.

The worker's liveness (/healthz on --metrics-port) is in tests/test_prometheus.py.
"""

import io
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from django.utils import timezone

from jobqueue.models import Worker
from tests.conftest import ROOT, database_url, wait_until


def test_readiness_fails_while_a_migration_is_pending(db: None, client: Client) -> None:
    ready = client.get("/api/health/?ready=1")
    assert ready.status_code == 200
    assert ready.json()["migrations"] == {"ok": True, "pending": []}
    # The database forgets the last migration: it is pending, as in a release not migrated yet.
    last = MigrationRecorder.Migration.objects.filter(app="jobqueue").order_by("-name").first()
    assert last is not None
    last.delete()
    not_ready = client.get("/api/health/?ready=1")
    assert not_ready.status_code == 503
    assert not_ready.json()["migrations"]["pending"] == [f"jobqueue.{last.name}"]
    assert client.get("/api/health/").status_code == 200  # liveness does not look at migrations


def status_of(*queues: str) -> int:
    try:
        call_command("worker_status", "--queues", ",".join(queues), stdout=io.StringIO())
    except CommandError as e:
        return e.returncode
    return 0


def test_worker_status_fails_for_a_queue_no_live_worker_serves(db: None) -> None:
    assert status_of("default") == 1  # nobody at all
    stale = timezone.now() - timedelta(minutes=5)
    Worker.objects.create(hostname="h", pid=1, concurrency=1, lost_at=timezone.now())
    Worker.objects.create(hostname="h", pid=2, concurrency=1, last_heartbeat=stale)
    Worker.objects.create(hostname="h", pid=3, concurrency=1, queues=["reports"])
    assert status_of("reports") == 0
    assert status_of("default") == 1  # the lost, the silent and the reports-only worker
    assert status_of("reports", "default") == 1
    Worker.objects.create(hostname="h", pid=4, concurrency=1, queues=[])  # every queue
    assert status_of("reports", "default") == 0


@pytest.mark.slow
def test_worker_status_sees_a_real_worker(start_worker: Callable) -> None:
    env = {**os.environ, "DATABASE_URL": database_url()}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "worker_status", "--queues", "default"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    assert run().returncode == 1
    start_worker()
    wait_until(Worker.objects.exists, 20, "the worker registered")
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "default: 1 live worker" in done.stdout
