"""Fixtures: the real test database, and real runworker processes against it."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection

from bench.fault_workers import FAULT_WORKER_ENV
from tests.proxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent

# Short heartbeats and leases so that tests of lost workers take seconds (the fault
# tools' settings: one set for every worker a test starts).
WORKER_ENV = FAULT_WORKER_ENV


def database_url() -> str:
    """A DATABASE_URL for the test database, for processes the tests start."""
    s = connection.settings_dict
    host = s.get("HOST") or "127.0.0.1"
    host = quote(host, safe="") if host.startswith("/") else host
    port = f":{s['PORT']}" if s.get("PORT") else ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s.get('USER') or 'postgres'}{password}@{host}{port}/{s['NAME']}"


@pytest.fixture
def execution_log(transactional_db: None) -> Iterator[Callable[[], list[tuple]]]:
    """A table the test tasks write one row to per execution; yields a reader."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS test_execution "
            "(job_id bigint, pid int, note text, at timestamptz DEFAULT clock_timestamp())"
        )
        cursor.execute("TRUNCATE test_execution")

    def read() -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT job_id, pid, note, at FROM test_execution ORDER BY at")
            return cursor.fetchall()

    yield read


class WorkerProcess:
    """A real `manage.py runworker` subprocess with its output kept for assertions."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runworker", *args],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        if not self._out.closed:  # stop() closes it; the log stays readable
            self._out.flush()
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._out.close()


@pytest.fixture
def start_worker(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start runworker processes against the test database; all are killed at the end."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        full_env = {**os.environ, **WORKER_ENV, "DATABASE_URL": database_url(), **env}
        worker = WorkerProcess(list(args), full_env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def db_now() -> datetime:
    """The database's clock: what tests compare the rows' times with."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def waits_for_lock_of(backend_pid: int) -> bool:
    """Whether some session is blocked on a lock that backend ``backend_pid`` holds (its row
    lock, its transaction): PostgreSQL's own record, ``pg_blocking_pids``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid)))",
            [backend_pid],
        )
        return cursor.fetchone()[0]


@contextlib.contextmanager
def behind_a_row_lock(
    job_id: int, call: Callable[[], object]
) -> Iterator[tuple[psycopg.Connection, list[object]]]:
    """Hold ``job_id``'s row lock in a transaction of its own, run ``call`` on a thread (with
    a Django connection of its own) and yield once PostgreSQL shows it waiting for that
    lock: the holding connection, for the test to act and then let go, and a list that
    gets what ``call`` returned or raised. Leaving the block commits the holder and waits
    for ``call`` to end: a race forced into one order."""
    holder = psycopg.connect(database_url())
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as e:  # the outcome the test reports
            outcome.append(e)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    try:
        holder.execute("SELECT FROM jobqueue_job WHERE id = %s FOR UPDATE", [job_id])
        thread.start()
        pid = holder.info.backend_pid
        wait_until(lambda: waits_for_lock_of(pid), 30, "the call waits for the row lock")
        yield holder, outcome
        holder.commit()
        thread.join(timeout=30)
    finally:
        holder.close()


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true, or fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


# ------------------------------------------------------------------ CI does not skip quietly
# On a user's machine a test that needs something absent (Debian's chromium, the playwright
# package, a PgBouncer or Prometheus binary) skips with a one-line reason. Under CI=true the
# guarantee it guards would go unchecked, so the skip is reported as a failure instead.
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A whole module skipped at import (pytest.importorskip) is a failure under CI=true."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {reason}"


# ------------------------------------------------------------------ a database that goes down
def proxy_to_test_database() -> tuple[TcpProxy, str]:
    """A proxy in front of the test database, and the DATABASE_URL that goes through it."""
    s = connection.settings_dict
    host, port = s.get("HOST") or "127.0.0.1", int(s.get("PORT") or 5432)
    # The embedded server listens on a Unix socket in its data folder.
    proxy = TcpProxy(f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port))
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    user = s.get("USER") or "postgres"
    return proxy, f"postgres://{user}{password}@127.0.0.1:{proxy.port}/{s['NAME']}"


@pytest.fixture
def db_proxy(transactional_db: None) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test database that the test can take down, and its URL."""
    proxy, url = proxy_to_test_database()
    yield proxy, url
    proxy.close()


# ------------------------------------------------------------------ which tests run where
# Two markers, set here from what a test uses, so that no test module has to remember them:
#
# - ``processes``: the test starts real processes (workers, gunicorn, a PostgreSQL cluster of
#   its own, a browser, promtool, wrk). `make test-fast` leaves these out for the edit loop.
# - ``one_mode``: the test's subject does not depend on how the test database is reached
#   (embedded over a Unix socket, or a server over TCP): it owns a cluster of its own, or it
#   drives processes whose behaviour the other tests already check in both modes. CI's
#   second database mode leaves these out; the first mode runs everything.
PROCESS_FIXTURES = frozenset(
    {"start_worker", "api_server", "api", "db_proxy", "owned_pg", "fault_db", "start_fault_worker"}
)
# Whole modules whose tests run in one database mode only (besides the slow tests, below).
ONE_MODE_PATHS = (
    "tests/faults/",
    "tests/admin/test_browser.py",
    "tests/admin/test_job_page.py",
    "tests/api/test_fuzz.py",
    "tests/api/test_generated_client.py",
    "tests/test_bench_smoke.py",
    "tests/test_monitoring_files.py",
    "tests/test_prometheus.py",
    "tests/test_rolling_restart.py",
)
# Whole modules that start processes without one of PROCESS_FIXTURES.
PROCESS_PATHS = (*ONE_MODE_PATHS, "tests/api/test_pgbouncer.py")
# Slow tests run in one mode too, except where the way the database is reached is the point.
BOTH_MODES_PATHS = ("tests/api/test_pgbouncer.py", "tests/api/test_promises.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path).relative_to(ROOT).as_posix()
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) or path.startswith(
            PROCESS_PATHS
        ):
            item.add_marker(pytest.mark.processes)
        slow = item.get_closest_marker("slow") and not path.startswith(BOTH_MODES_PATHS)
        if path.startswith(ONE_MODE_PATHS) or slow:
            item.add_marker(pytest.mark.one_mode)
    # The slow tests first: pytest-xdist hands tests out in this order, so the long ones start
    # at once on every worker and the run ends on short ones, with the workers done together.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
