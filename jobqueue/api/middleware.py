"""Middleware for a cheap request path: a connection check without a query, no messages on the API.

``ConnectionCheckMiddleware`` is a health check for persistent database
connections that costs no query.

Django's ``CONN_HEALTH_CHECKS`` sends ``SELECT 1`` before the first query of
every request: on a job poll that is one round trip in three. This
middleware checks instead whether the server has said anything on an idle
connection. An idle connection's socket has nothing to read unless the
server closed it (a restart, ``pg_terminate_backend``, an idle timeout: each
sends an error and closes) or, rarely, sent a notice; only then does it run
Django's ``SELECT 1`` check, and closes the connection if that fails, so that
the request opens a fresh one instead of failing. Put it first in
``MIDDLEWARE``, with ``CONN_HEALTH_CHECKS`` off.
"""

import select
from collections.abc import Callable
from functools import cache

from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.urls import reverse


def close_if_server_closed(alias: str) -> None:
    """Close ``alias``'s persistent connection if the server closed its end."""
    wrapper = connections[alias]
    conn = wrapper.connection
    if conn is None or wrapper.in_atomic_block:
        return
    if conn.closed or conn.broken:
        wrapper.close()
        return
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        pending = bool(poller.poll(0))
    except (OSError, ValueError):
        pending = True
    if pending and not wrapper.is_usable():
        wrapper.close()


class ConnectionCheckMiddleware:
    """Before each request, drop persistent connections that the server has closed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for wrapper in connections.all(initialized_only=True):
            close_if_server_closed(wrapper.alias)
        return self.get_response(request)


@cache
def api_prefix() -> str:
    """Where the API is mounted (``/api/``), from the URLconf."""
    return reverse("api-root")


class MessageMiddleware(DjangoMessageMiddleware):
    """Django's messages framework, except on the API, whose JSON never carries messages.

    Setting up the message storage (a cookie signer and a session store) on
    every request was 3-4% of a job poll's CPU time. The admin still gets it.
    """

    def process_request(self, request: HttpRequest) -> None:
        if not request.path.startswith(api_prefix()):
            super().process_request(request)
