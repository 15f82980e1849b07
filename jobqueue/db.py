"""Plain psycopg connections to the project's database, outside the ORM.

The worker's claim/ack loop, LISTEN/NOTIFY and progress reports each hold a
connection of their own in autocommit mode, so none of them ever shares a
transaction with task code.
"""

from typing import Any

import psycopg
from django.db import connections

_DJANGO_ONLY = {"cursor_factory", "context", "prepare_threshold"}


def connection_params(alias: str = "default") -> dict[str, Any]:
    """psycopg.connect() keyword arguments for the Django database ``alias``."""
    params = connections[alias].get_connection_params()
    return {k: v for k, v in params.items() if k not in _DJANGO_ONLY}


def connect(alias: str = "default", **extra: Any) -> psycopg.Connection:
    """A new autocommit connection to the Django database ``alias``."""
    return psycopg.connect(autocommit=True, **connection_params(alias), **extra)


class LazyConnection:
    """An autocommit connection opened on first use, and again after the server dropped it."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._conn: psycopg.Connection | None = None

    def cursor(self) -> psycopg.Cursor:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.alias)
        return self._conn.cursor()
