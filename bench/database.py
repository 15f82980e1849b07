"""Fresh databases for the systems, on one PostgreSQL server, created and dropped by name.

Only databases whose names start with the suite's prefix are ever dropped,
so the suite never touches another engineer's or the test suite's databases.
"""

import os
from urllib.parse import urlsplit, urlunsplit

import psycopg

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """The server, from BENCH_PG_URL (any database name in it is ignored)."""
    return os.environ.get("BENCH_PG_URL", DEFAULT_SERVER)


def dsn_for(database: str, server: str | None = None) -> str:
    parts = urlsplit(server or server_url())
    return urlunsplit(parts._replace(path="/" + database))


def recreate(database: str, *, prefix: str, server: str | None = None) -> str:
    """Drop and create ``database`` (which must start with ``prefix``); returns its DSN."""
    if not database.startswith(prefix) or not prefix.startswith("bench"):
        raise ValueError(f"refusing to recreate {database!r}: not a bench database")
    with psycopg.connect(dsn_for("postgres", server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    return dsn_for(database, server)


def drop(database: str, *, prefix: str, server: str | None = None) -> None:
    if not database.startswith(prefix) or not prefix.startswith("bench"):
        raise ValueError(f"refusing to drop {database!r}: not a bench database")
    with psycopg.connect(dsn_for("postgres", server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def server_version(server: str | None = None) -> str:
    with psycopg.connect(dsn_for("postgres", server), autocommit=True) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])
