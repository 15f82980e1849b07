"""Thread-mode jobs that use the ORM stay within PostgreSQL's connections.

Every thread has its own Django connection, so two children of 64 threads
would want 128 at once. A server of our own with max_connections = 50 (47
for non-superuser-reserved use) shows the budget: with a pool per child
(DJANGO_DB_POOL_SIZE=16, so 2 x 16 plus the supervisor's one) every job
succeeds; without it, the same jobs hit "too many clients".
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from bench.fault_workers import ROOT
from bench.owned_postgres import OwnedPostgres
from tests.conftest import wait_until
from tests.faults.conftest import owned_postgres

JOBS = 256


@pytest.fixture(scope="module")
def small_pg() -> Iterator[OwnedPostgres]:
    with owned_postgres(max_connections="50") as server:
        yield server


def enqueue_orm_jobs(url: str, n: int) -> list[int]:
    """``n`` tests.tasks.orm_query jobs, through the project's own enqueue_many."""
    code = (
        "import django, json, sys; django.setup()\n"
        "from django.tasks import default_task_backend\n"
        "from tests.tasks import orm_query\n"
        f"calls = [((), {{'seconds': 0.3}})] * {n}\n"
        "results = default_task_backend.enqueue_many(orm_query, calls)\n"
        "print(json.dumps([int(r.id) for r in results]))\n"
    )
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def outcomes(server: OwnedPostgres, ids: list[int]) -> dict[str, int]:
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM jobqueue_job WHERE id = ANY(%s) GROUP BY status", [ids]
        ).fetchall()
    return dict(rows)


def ended(server: OwnedPostgres, ids: list[int]) -> int:
    """How many of ``ids`` are final; -1 while the server refuses us too (no pool)."""
    try:
        counts = outcomes(server, ids)
    except psycopg.OperationalError:
        return -1
    return counts.get("succeeded", 0) + counts.get("failed", 0)


def errors(server: OwnedPostgres, ids: list[int]) -> list[str]:
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT e->>'message' FROM jobqueue_job, jsonb_array_elements(errors) e "
            "WHERE id = ANY(%s)",
            [ids],
        ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("pool", [16, 0], ids=["pooled", "unpooled"])
def test_two_children_of_64_threads_fit_in_50_connections(small_pg, start_fault_worker, pool):
    with small_pg.connect() as conn:
        conn.execute("TRUNCATE jobqueue_job CASCADE")
    ids = enqueue_orm_jobs(small_pg.url, JOBS)
    env = {"DJANGO_DB_POOL_SIZE": str(pool), "JOBQUEUE_DEFAULT_MAX_ATTEMPTS": "1"}
    worker = start_fault_worker(
        small_pg.url, record_url=small_pg.url, concurrency=2, args=("--threads", "64"), env=env
    )
    wait_until(lambda: ended(small_pg, ids) == JOBS, 120, "every job ended")
    if pool:
        assert outcomes(small_pg, ids) == {"succeeded": JOBS}, worker.output()[-3000:]
        assert "too many clients" not in worker.output()
    else:  # what the pool is for: without it the same load runs out of connections
        assert any("too many clients" in message for message in errors(small_pg, ids))
