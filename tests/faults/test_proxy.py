"""The fault proxy against a real PostgreSQL: what a client sees when the network breaks."""

import threading
import time

import psycopg
import pytest
from django.db import connection

from tests.proxy import TcpProxy


@pytest.fixture
def proxy(db_proxy: tuple[TcpProxy, str]) -> TcpProxy:
    """A proxy to the test database's server (TCP, or the embedded one's Unix socket)."""
    return db_proxy[0]


def connect(proxy: TcpProxy, **kwargs: object) -> psycopg.Connection:
    user = connection.settings_dict.get("USER") or "postgres"
    return psycopg.connect(
        host="127.0.0.1", port=proxy.port, user=user, dbname="postgres", autocommit=True,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_queries_pass_through(proxy: TcpProxy) -> None:
    with connect(proxy) as conn:
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
        assert proxy.connections == 1


def test_cut_resets_open_connections_and_accepts_new_ones(proxy: TcpProxy) -> None:
    conn = connect(proxy)
    conn.execute("SELECT 1")
    proxy.cut()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with connect(proxy) as again:
        assert again.execute("SELECT 2").fetchone() == (2,)


def test_blackhole_hangs_queries_and_connections_until_restored(proxy: TcpProxy) -> None:
    conn = connect(proxy)
    conn.execute("SELECT 1")
    proxy.blackhole()
    answers: list[object] = []
    query = threading.Thread(target=lambda: answers.append(conn.execute("SELECT 7").fetchone()))
    query.start()
    query.join(timeout=1.5)
    assert query.is_alive(), "a query got through a black hole"
    # No RST or FIN either: a new connection neither fails nor succeeds until its own timeout.
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        connect(proxy, connect_timeout=2)
    assert time.monotonic() - started >= 1.5
    proxy.restore()
    query.join(timeout=5)
    assert answers == [(7,)], "the held query was not answered once the network healed"
    conn.close()
    with connect(proxy) as again:
        assert again.execute("SELECT 3").fetchone() == (3,)


def test_refuse_resets_open_connections_and_closes_new_ones_until_restored(
    proxy: TcpProxy,
) -> None:
    conn = connect(proxy)
    conn.execute("SELECT 1")
    proxy.refuse()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        connect(proxy, connect_timeout=2)
    assert proxy.refused == 1
    proxy.restore()
    with connect(proxy) as again:
        assert again.execute("SELECT 3").fetchone() == (3,)
