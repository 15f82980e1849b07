"""Fixtures for fault tests: an owned PostgreSQL, a fresh queue per test, workers, proxies.

The tests here drive real ``runworker`` processes against a server they may
restart, so they never use the shared test database: each test gets a copy
of a migrated database in a cluster of the session's own (see
bench/owned_postgres.py), dropped at the end of the session.
"""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from bench import fault_checks, recording
from bench.fault_workers import WORKER_APPLICATION, Worker
from bench.owned_postgres import OwnedPostgres, Unavailable
from tests.conftest import wait_until
from tests.proxy import TcpProxy


@contextmanager
def owned_postgres(**options: str) -> Iterator[OwnedPostgres]:
    """A PostgreSQL cluster of our own (server ``options`` as OwnedPostgres.create takes),
    dropped afterwards; the test skips where none can be made."""
    try:
        server = OwnedPostgres.create(**options)
    except Unavailable as e:
        pytest.skip(f"no PostgreSQL of our own: {e}")
    try:
        yield server
    finally:
        server.drop()


@pytest.fixture(scope="session")
def owned_pg() -> Iterator[OwnedPostgres]:
    """A PostgreSQL cluster of this session's own, with a migrated database ``jobqueue``."""
    with owned_postgres() as server:
        yield server


@dataclass(slots=True)
class FaultDatabase:
    """One test's queue in the owned cluster, and the URLs processes reach it by."""

    server: OwnedPostgres
    name: str

    @property
    def url(self) -> str:
        """For workers: their connections are tagged, so that faults can find them."""
        return self.server.url_for(self.name, application_name=WORKER_APPLICATION)

    @property
    def record_url(self) -> str:
        """For the recording task: direct, untagged, out of the faults' way."""
        return self.server.url_for(self.name, application_name="faults-recorder")

    def url_via(self, proxy: TcpProxy) -> str:
        """The workers' URL, but through ``proxy``."""
        return self.url.replace(f":{self.server.port}/", f":{proxy.port}/")

    def connect(self) -> psycopg.Connection:
        return self.server.connect(self.name)

    def enqueue(self, jobs: list[tuple[int, float]]) -> list[int]:
        return recording.enqueue(self.server.url_for(self.name), jobs)

    def examine(self, job_ids: list[int]) -> fault_checks.Findings:
        with self.connect() as conn:
            return fault_checks.examine(conn, job_ids)

    def running(self) -> list[tuple[int, int, int]]:
        with self.connect() as conn:
            return fault_checks.running(conn)

    def now(self) -> datetime:
        """The cluster's clock: what the workers' heartbeats and the faults are timed by."""
        with self.connect() as conn:
            return conn.execute("SELECT clock_timestamp()").fetchone()[0]

    def server_started_at(self) -> datetime:
        """When the cluster's server last started (after a restart: the new one's start)."""
        with self.connect() as conn:
            return conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]

    def beating_since(self, pids: list[int], moment: datetime) -> int:
        """How many of the supervisors ``pids`` heart-beat since ``moment`` (the cluster's
        clock): connected and renewing their leases; none while the server is unreachable."""
        try:
            with self.connect() as conn:
                return conn.execute(
                    "SELECT count(DISTINCT pid) FROM jobqueue_worker "
                    "WHERE pid = ANY(%s) AND last_heartbeat > %s",
                    [pids, moment],
                ).fetchone()[0]
        except psycopg.OperationalError:
            return 0

    def wait_past(self, moment: datetime, seconds: float, what: str) -> None:
        """Until the cluster's clock is ``seconds`` past ``moment``: a fault's duration,
        measured where leases are (a busy host may oversleep, never undersleep, this)."""
        wait_until(lambda: (self.now() - moment).total_seconds() >= seconds, seconds + 60, what)

    def wait_drained(self, job_ids: list[int], timeout: float) -> None:
        """Until every job is final; a connection error (a restart under way) is retried."""
        wait_until(lambda: self._unfinished(job_ids) == 0, timeout, "every job is final")

    def _unfinished(self, job_ids: list[int]) -> int:
        try:
            with self.connect() as conn:
                return fault_checks.unfinished(conn, job_ids)
        except psycopg.OperationalError:
            return -1


@pytest.fixture
def fault_db(owned_pg: OwnedPostgres, request: pytest.FixtureRequest) -> FaultDatabase:
    name = "t_" + re.sub(r"\W", "_", request.node.name)[:50].lower()
    owned_pg.clone(name)
    db = FaultDatabase(owned_pg, name)
    with db.connect() as conn:
        recording.create_table(conn)
    return db


@pytest.fixture
def start_fault_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start ``runworker`` processes (``Worker(url, record_url=..., ...)``); all stopped at end."""
    started: list[Worker] = []

    def start(
        url: str,
        *,
        record_url: str,
        concurrency: int = 2,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Worker:
        log = tmp_path / f"worker-{len(started)}.log"
        worker = Worker(
            url, record_url=record_url, log=log, concurrency=concurrency, args=args, env=env
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close(timeout=5)


@pytest.fixture
def proxy_to(owned_pg: OwnedPostgres) -> Iterator[Callable[[], TcpProxy]]:
    """Make proxies to the owned cluster; all closed at the end."""
    made: list[TcpProxy] = []

    def make() -> TcpProxy:
        made.append(TcpProxy(("127.0.0.1", owned_pg.port)))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()
