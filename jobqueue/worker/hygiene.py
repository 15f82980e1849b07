"""After every task, the child's database connections are as clean as before it.

A task may end while a connection is not idle: its timeout (JobTimeout,
raised by the job clock's SIGALRM handler) or a cancel can interrupt it
while psycopg waits for a query's answer. The query keeps running on the
server, holding its locks, and the client side is left "ACTIVE": the next
job's first query on that connection would fail with "another command is
already in progress". A task may also leave a transaction open or failed.
Either way the next job in this child must not inherit it.

Inside ``transaction.atomic()`` Django notices the broken connection itself
(its rollback fails) and closes it, but closing a connection does not stop
its server process's query: PostgreSQL only sees the client has gone when
the query ends. So every Django connection's cancel key is kept, and a
connection closed during a task is sent a cancel request. For an idle or
exited server process, a cancel request does nothing.
"""

import threading
from contextlib import suppress
from typing import Any

import psycopg
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from psycopg import Connection
from psycopg.pq import TransactionStatus

from jobqueue.db import LazyConnection, cancel_query


class ConnectionHygiene:
    """Resets the child's connections that a task left busy or in a transaction.

    Create one per child process, before its first job, in the thread that
    runs the jobs; call ``reset()`` after every job, once the job clock is
    stopped. Idle connections are left open: for them ``reset()`` reads
    libpq's state and makes no round trip (under a microsecond).
    """

    def __init__(self, progress_connection: LazyConnection) -> None:
        self.progress_connection = progress_connection
        self.thread = threading.get_ident()
        # Each Django connection of this thread (by its psycopg connection), with
        # what cancels its query even once it is closed: libpq's cancel object
        # holds the server process's key, not the socket. Connections of threads
        # a task started are left to those threads.
        self.tracked: dict[Connection, tuple[BaseDatabaseWrapper, Any]] = {}
        for wrapper in connections.all(initialized_only=True):
            self._track(wrapper)
        connection_created.connect(self._created)

    def _created(self, sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        if threading.get_ident() == self.thread:
            self._track(connection)

    def _track(self, wrapper: BaseDatabaseWrapper) -> None:
        raw = wrapper.connection
        if isinstance(raw, Connection) and not raw.closed:
            self.tracked[raw] = (wrapper, raw.pgconn.get_cancel())

    def reset(self) -> None:
        """Make every connection of this thread idle and outside a transaction, or close it.

        - A query still running (the task was interrupted in it) is cancelled
          on the server and its connection closed.
        - An open or failed transaction outside ``atomic()``, or autocommit
          turned off, is ended by closing the connection; Django opens a
          fresh one on next use.
        - A connection the server or the network cut is closed in Django too.
        - A connection closed during the task is sent a cancel request, for
          the query Django may have left running when it closed it (not one
          that broke: its server, or the way to it, is gone). That request
          has no timeout of its own (libpq's PQcancel), but it goes out only
          after a close the client made during the task.
        - Connections within an ``atomic()`` block that is still open (the
          caller's own) are left to that block, unless a query is running.
        """
        unclean = [
            raw
            for raw, (wrapper, _) in self.tracked.items()
            if raw.pgconn.transaction_status != TransactionStatus.IDLE
            or wrapper.autocommit != wrapper.settings_dict["AUTOCOMMIT"]
        ]
        for raw in unclean:
            self._reset(raw)
        self.progress_connection.discard_if_unclean()

    def _reset(self, raw: Connection) -> None:
        wrapper, cancel_key = self.tracked[raw]
        if raw.closed:
            if not raw.broken:  # closed by the client, not cut off (server or network gone)
                with suppress(psycopg.Error, OSError):
                    cancel_key.cancel()
        elif raw.pgconn.transaction_status == TransactionStatus.ACTIVE:
            cancel_query(raw)
        elif wrapper.in_atomic_block:
            return
        del self.tracked[raw]
        if wrapper.connection is raw:
            # Closing a broken connection may fail; Django has dropped it all the same.
            with suppress(DatabaseError):
                wrapper.close()
