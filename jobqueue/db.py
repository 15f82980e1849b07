"""Plain psycopg connections to the project's database, outside the ORM.

The worker's claim/ack loop, LISTEN/NOTIFY and progress reports each hold a
connection of their own in autocommit mode, so none of them ever shares a
transaction with task code. The hot statements of web requests and enqueue
run on Django's own connection through ``prepared_cursor``.
"""

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from django.db import connections
from psycopg.pq import TransactionStatus

# prepare_threshold is kept: None in the database's OPTIONS (behind a PgBouncer
# in transaction mode older than 1.21) turns prepared statements off here too.
_DJANGO_ONLY = {"cursor_factory", "context"}

# Seconds to wait for the server to answer a cancel request: a child waits this
# long at most before it reports its job.
CANCEL_TIMEOUT = 2.0


def connection_params(alias: str = "default") -> dict[str, Any]:
    """psycopg.connect() keyword arguments for the Django database ``alias``."""
    params = connections[alias].get_connection_params()
    return {k: v for k, v in params.items() if k not in _DJANGO_ONLY}


def connect(
    alias: str = "default", *, server_settings: dict[str, str] | None = None, **extra: Any
) -> psycopg.Connection:
    """A new autocommit connection to the Django database ``alias``.

    ``server_settings`` travel in the startup packet (``options``), never as a
    session SET: behind a pooler in transaction mode, a SET would stay on a
    server connection that other clients get next, while this client's later
    transactions ran on others. PgBouncer refuses ``options`` unless it is in its
    ``ignore_startup_parameters``, and then drops them; a direct connection applies them.
    """
    params = connection_params(alias)
    if server_settings:
        given = [params.get("options", "")] if params.get("options") else []
        params["options"] = " ".join(given + [f"-c {k}={v}" for k, v in server_settings.items()])
    return psycopg.connect(autocommit=True, **params, **extra)


async def connect_async(alias: str = "default", **extra: Any) -> psycopg.AsyncConnection:
    """A new autocommit asyncio connection to ``alias`` that loads values as Django's do.

    It keeps Django's adapters (jsonb read as text, timestamps in Django's
    time zone), so that rows read on it load into models like the ORM's.
    """
    params = connections[alias].get_connection_params()
    for key in ("cursor_factory", "prepare_threshold"):
        params.pop(key, None)
    return await psycopg.AsyncConnection.connect(autocommit=True, **{**params, **extra})


class LazyConnection:
    """An autocommit connection opened on first use, and again after the server dropped it."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._conn: psycopg.Connection | None = None

    def cursor(self) -> psycopg.Cursor:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.alias)
        return self._conn.cursor()

    def discard_if_unclean(self) -> None:
        """Close the connection if a task left it running a query or in a transaction.

        A query interrupted client-side (JobTimeout raised in a SIGALRM handler
        while psycopg waited for it) keeps running on the server and leaves
        the connection unusable ("another command is already in progress"):
        the server is asked to cancel it first. An idle connection is kept,
        at the cost of reading its status from libpq, no round trip.
        """
        conn = self._conn
        if conn is None or conn.pgconn.transaction_status == TransactionStatus.IDLE:
            return
        if conn.pgconn.transaction_status == TransactionStatus.ACTIVE:
            cancel_query(conn)
        conn.close()
        self._conn = None


def cancel_query(conn: psycopg.Connection) -> None:
    """Ask the server to cancel the query ``conn`` runs, if it can be reached in time.

    For a query the client stopped waiting for; the connection is to be
    closed afterwards, so a failed cancel is not an error.
    """
    with suppress(psycopg.Error, OSError):
        conn.cancel_safe(timeout=CANCEL_TIMEOUT)


class PreparedCursor(psycopg.Cursor):
    """A server-side binding cursor whose statements are prepared on first use.

    Django's own cursors bind on the client and never prepare; this one is
    used only for jobqueue's fixed hot statements (enqueue's INSERT and COPY,
    the API's job poll and token lookup).
    """

    def execute(  # type: ignore[override]
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> "PreparedCursor":
        super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)
        return self


@contextmanager
def prepared_cursor(alias: str) -> Iterator[Any]:
    """A Django cursor wrapper (logging, error wrapping) around a ``PreparedCursor``.

    The psycopg cursor is kept with its connection and reused: a new cursor
    looks up the loader of every result column again on each execution.
    """
    connection = connections[alias]
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    kept = getattr(connection, "_jobqueue_prepared_cursor", None)
    if kept is None or kept.connection is not raw or kept.closed:
        with connection.wrap_database_errors:
            kept = PreparedCursor(raw)
        connection._jobqueue_prepared_cursor = kept  # type: ignore[attr-defined]
    yield connection._prepare_cursor(kept)  # type: ignore[attr-defined]
