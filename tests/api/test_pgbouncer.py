"""The API and workers behind a real PgBouncer in transaction pooling mode.

Debian's ``pgbouncer`` package provides it (.ci/run installs it); without it the
tests skip with one line. PgBouncer reaches the test database through the test
proxy (tests/proxy.py), which also covers the embedded server's Unix socket.
"""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from jobqueue.models import Job, Worker
from tests.api.conftest import API_ENV, Server, free_port, start_gunicorn
from tests.conftest import WORKER_ENV, database_url, proxy_to_test_database, wait_until

pytestmark = pytest.mark.slow

POLL_INTERVAL = float(WORKER_ENV["JOBQUEUE_POLL_INTERVAL"])
# PgBouncer 1.18 (Debian 12) keeps no prepared statements across transactions.
POOLED_ENV = {"DATABASE_PREPARED_STATEMENTS": "0"}


@pytest.fixture
def pgbouncer(transactional_db: None) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the test database; yields its URL."""
    binary = shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        pytest.skip("pgbouncer (Debian's pgbouncer package) is not installed")
    proxy, proxied = proxy_to_test_database()
    url = psycopg.conninfo.conninfo_to_dict(proxied)
    # It refuses to run as root: it drops to postgres, which must read its files.
    folder = Path(tempfile.mkdtemp(prefix="jq-pgbouncer-"))
    folder.chmod(0o755)
    user = url.get("user", "postgres")
    (folder / "users.txt").write_text(f'"{user}" "{url.get("password", "")}"\n')
    port = free_port()
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{url['dbname']} = host=127.0.0.1 port={url['port']}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 1\n"  # one server connection: a leak shows
        # The worker's timeouts travel as startup options; PgBouncer drops them.
        "ignore_startup_parameters = options\n"
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    as_postgres = ["-u", "postgres"] if os.geteuid() == 0 else []
    log = (folder / "pgbouncer.log").open("wb")
    proc = subprocess.Popen(
        [binary, *as_postgres, str(folder / "pgbouncer.ini")], stdout=log, stderr=log
    )
    pooled = f"postgres://{user}@127.0.0.1:{port}/{url['dbname']}"
    wait_until(lambda: _answers(pooled), 20, "pgbouncer accepts connections")
    yield pooled
    proc.terminate()
    proc.wait(timeout=20)
    log.close()
    proxy.close()
    shutil.rmtree(folder, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture
def pooled_api(pgbouncer: str, tmp_path: Path) -> Iterator[Server]:
    """gunicorn whose every connection goes through PgBouncer."""
    env = {**API_ENV, **POOLED_ENV, "DATABASE_URL": pgbouncer}
    proc, base_url = start_gunicorn(env, tmp_path / "gunicorn.log", threads=2)
    yield Server(base_url)
    proc.terminate()
    proc.wait(timeout=30)


def submit(api: Server, token: str, task: str, **kwargs: object) -> int:
    reply = api.call("POST", "/api/jobs/", {"task": task, "kwargs": kwargs}, token=token)
    assert reply.status == 202, reply.body
    return reply.body["id"]


def status(api: Server, token: str, job_id: int) -> str:
    reply = api.call("GET", f"/api/jobs/{job_id}/", token=token)
    assert reply.status == 200, reply.body
    return reply.body["status"]


def test_enqueue_claim_ack_progress_cancel_and_the_api_through_pgbouncer(
    pgbouncer: str, pooled_api: Server, make_user: Callable, start_worker: Callable
) -> None:
    _, token = make_user()
    # Children, acks and claims go through the pooler; the LISTEN connection goes direct.
    start_worker(
        "--concurrency", "2", DATABASE_URL=pgbouncer, DIRECT_DATABASE_URL=database_url(),
        **POOLED_ENV,
    )  # fmt: skip
    steps = submit(pooled_api, token, "demo.progress", steps=3, step_seconds=0.2)
    echo = submit(pooled_api, token, "demo.echo", n=1)
    long = submit(pooled_api, token, "demo.sleep", seconds=60)
    wait_until(lambda: status(pooled_api, token, long) == "running", 30, "the long job started")
    assert pooled_api.call("POST", f"/api/jobs/{long}/cancel/", token=token).status == 202
    for job_id, final in ((steps, "succeeded"), (echo, "succeeded"), (long, "cancelled")):
        wait_until(lambda j=job_id, f=final: status(pooled_api, token, j) == f, 30, f"{final}")
    done = Job.objects.get(pk=steps)
    assert done.result == {"steps": 3} and done.progress_message == "done: 3 steps"
    assert Job.objects.get(pk=echo).result == {"n": 1}


def test_a_worker_whose_listen_goes_through_the_pooler_polls(
    pgbouncer: str, pooled_api: Server, make_user: Callable, start_worker: Callable
) -> None:
    """Its NOTIFYs may never arrive: each job still starts within POLL_INTERVAL. Its session's
    timeouts do not leak onto the pooled server connections that others use."""
    _, token = make_user()
    start_worker(DATABASE_URL=pgbouncer, **POOLED_ENV)
    wait_until(Worker.objects.exists, 20, "the worker connected")
    waits = []
    for _ in range(4):
        job_id = submit(pooled_api, token, "demo.echo")
        wait_until(lambda j=job_id: status(pooled_api, token, j) == "succeeded", 10, "done")
        job = Job.objects.get(pk=job_id)
        waits.append((job.started_at - job.created_at).total_seconds())
        time.sleep(0.2)
    assert max(waits) <= POLL_INTERVAL + 0.5, waits
    with psycopg.connect(pgbouncer, autocommit=True) as conn:  # the pool's one server connection
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "0"
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"


def test_a_direct_worker_session_has_its_timeouts(transactional_db: None) -> None:
    """Without a pooler the startup options apply: a lock or stuck statement cannot hold the
    heartbeat up (README: LEASE/10 and LEASE/2, within their bounds)."""
    import selectors

    from jobqueue.conf import get_settings
    from jobqueue.worker.session import DatabaseSession

    session = DatabaseSession(get_settings(), selectors.DefaultSelector())
    db = session.open()
    try:
        assert db.execute("SHOW lock_timeout").fetchone()[0] == "2s"
        assert db.execute("SHOW statement_timeout").fetchone()[0] == "15s"
    finally:
        session.close()


def test_a_listen_database_that_does_not_exist_fails_the_checks(settings) -> None:
    from jobqueue.checks import check_settings

    settings.JOBQUEUE = {**settings.JOBQUEUE, "LISTEN_DATABASE": "direct"}
    assert [e.id for e in check_settings()] == ["jobqueue.E005"]
