"""The ASGI application: watchers wait on the event loop, every other request runs on threads.

``project.asgi`` serves the site through ``WatchingApp``. Two routes wait for
a job to change: ``GET /api/jobs/{id}/events/`` (server-sent events) and
``GET /api/jobs/{id}/?wait=N`` (the long-poll). Each is first answered by
the API's own sync view on the thread pool, like any other request:
authentication, ownership (another user's job is a 404), the job's JSON. The
view hands back a ``WatchGrant``, and this layer then keeps the request open
as a coroutine on the process's ``JobHub``, with no thread and no database
connection, until the job changes (the long-poll), finishes (the stream) or
the client leaves. Everything else goes to Django's WSGI handler on a fixed
pool of threads (a2wsgi), whose persistent database connections and
prepared statements serve the short requests as under gunicorn's threads.

Fair use, per web process: at most ``WATCH_MAX`` watchers (503 with
``Retry-After`` beyond), ``WATCH_PER_USER`` per user (429), and a watcher
that falls ``WATCH_BUFFER`` changes behind, or leaves a write unread for
``WATCH_SEND_TIMEOUT`` seconds, is dropped.
"""

import asyncio
import io
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import build_environ
from django.urls import reverse
from rest_framework.renderers import JSONRenderer

from jobqueue.api.hub import JobHub, Watcher, hub
from jobqueue.api.stream import FINISHED, GRANT_KEY, KEEP_ALIVE, WatchGrant
from jobqueue.conf import get_settings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# Seconds a client refused for the server-wide cap is asked to wait before trying again.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True, slots=True)
class ViewAnswer:
    """The sync view's response, and its grant when the request may go on watching."""

    status: int
    headers: Headers
    body: bytes
    grant: WatchGrant | None


class WatchingApp:
    """Routes the two watching requests to coroutines, and the rest to the WSGI app's threads."""

    def __init__(self, wsgi_app: Callable[..., Any], *, threads: int, watchers: JobHub = hub):
        self.wsgi_app = wsgi_app
        self.threaded = WSGIMiddleware(wsgi_app, workers=threads)
        self.hub = watchers
        self._paths: re.Pattern[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http" and (route := self._route(scope)) is not None:
            await route(scope, receive, send)
        else:
            await self.threaded(scope, receive, send)  # type: ignore[arg-type]  # its TypedDicts

    def _route(self, scope: Scope) -> Callable[[Scope, Receive, Send], Awaitable[None]] | None:
        if scope["method"] != "GET":
            return None
        if self._paths is None:
            job_path = reverse("job-detail", args=[0])  # /api/jobs/0/
            self._paths = re.compile(re.escape(job_path[:-2]) + r"[0-9]+/(events/)?")
        match = self._paths.fullmatch(scope["path"])
        if match is None:
            return None
        if match[1]:
            return self._stream
        if "wait" in parse_qs(scope["query_string"].decode("latin-1")):
            return self._long_poll
        return None

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Server-sent events: the view's first event, then one per change until it finishes."""
        admitted = await self._admit(scope, send)
        if admitted is None:
            return
        answer, grant = admitted
        # The view's length was that of its one event; the stream goes on (chunked).
        headers = [(k, v) for k, v in answer.headers if k != b"content-length"]
        start = {"type": "http.response.start", "status": 200, "headers": headers}
        if grant.finished:
            await send(start)
            await send({"type": "http.response.body", "body": answer.body})
            return
        settings = get_settings()
        watcher = self.hub.watch(grant)  # counted from now on, before any await
        leaving = asyncio.ensure_future(_close_on_disconnect(receive, watcher))
        try:
            await send(start)
            if not await _write(send, answer.body, watcher, settings.WATCH_SEND_TIMEOUT):
                return
            while (states := await watcher.changes(settings.WATCH_KEEPALIVE)) is not None:
                body = b"".join(state.event for state in states) or KEEP_ALIVE
                if not await _write(send, body, watcher, settings.WATCH_SEND_TIMEOUT):
                    return
                if any(state.data["status"] in FINISHED for state in states):
                    break
            # Finished, dropped or stopping: end the response (a client that reconnects with
            # Last-Event-ID gets the latest state at once).
            await _write(send, b"", watcher, settings.WATCH_SEND_TIMEOUT, more=False)
        finally:
            leaving.cancel()
            self.hub.unwatch(watcher)

    async def _long_poll(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``?wait=N``: the job as soon as it changes, or as it is after N seconds."""
        admitted = await self._admit(scope, send)
        if admitted is None:
            return
        answer, grant = admitted
        if grant.finished:
            await _respond(send, answer.status, answer.headers, answer.body)
            return
        wait = float(parse_qs(scope["query_string"].decode("latin-1"))["wait"][-1])
        watcher = self.hub.watch(grant)
        leaving = asyncio.ensure_future(_close_on_disconnect(receive, watcher))
        try:
            states = await watcher.changes(wait)
            gone = leaving.done()
        finally:
            leaving.cancel()
            self.hub.unwatch(watcher)
        if gone:
            return
        if states:
            body = JSONRenderer().render(states[-1].data)
            await _respond(send, answer.status, answer.headers, body)
        else:
            # Nothing changed (or the server is stopping): the job as it is now, read afresh.
            answer = await self._view(scope)
            await _respond(send, answer.status, answer.headers, answer.body)

    async def _admit(self, scope: Scope, send: Send) -> tuple[ViewAnswer, WatchGrant] | None:
        """The view's answer and grant if the request may watch; else answer it and None."""
        settings = get_settings()
        if len(self.hub) >= settings.WATCH_MAX:
            await _refuse(
                send,
                503,
                "This server is watching as many jobs as it can; try again shortly.",
                RETRY_AFTER_SECONDS,
            )
            return None
        answer = await self._view(scope)
        grant = answer.grant
        if answer.status != 200 or grant is None:
            await _respond(send, answer.status, answer.headers, answer.body)
            return None
        if not grant.finished and self.hub.watching(grant.user_id) >= settings.WATCH_PER_USER:
            await _refuse(
                send,
                429,
                f"You are watching {settings.WATCH_PER_USER} jobs at once, the most allowed; "
                "close a stream or a long-poll first.",
                int(settings.WATCH_KEEPALIVE),
            )
            return None
        return answer, grant

    async def _view(self, scope: Scope) -> ViewAnswer:
        """The request answered by the WSGI app, on its thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threaded.executor, self._call_view, scope)

    def _call_view(self, scope: Scope) -> ViewAnswer:
        environ = build_environ(scope, io.BytesIO())  # type: ignore[arg-type]  # a GET: no body
        started: list[Any] = []
        result = self.wsgi_app(environ, lambda status, headers, exc_info=None: started.extend(
            (status, headers)
        ))  # fmt: skip
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()  # Django's request_finished: connections are returned or closed
        status, headers = started
        return ViewAnswer(
            int(status.split(" ", 1)[0]),
            [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            body,
            cast(WatchGrant | None, environ.get(GRANT_KEY)),
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.hub.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _close_on_disconnect(receive: Receive, watcher: Watcher) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    watcher.close()


async def _write(
    send: Send, body: bytes, watcher: Watcher, timeout: float, *, more: bool = True
) -> bool:
    """Send a chunk of the stream; False (the watcher dropped) if the client does not take it."""
    try:
        async with asyncio.timeout(timeout):
            await send({"type": "http.response.body", "body": body, "more_body": more})
    except TimeoutError:
        watcher.dropped = True
        watcher.close()
        return False
    return True


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    kept = [(k, v) for k, v in headers if k != b"content-length"]
    kept.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, status: int, detail: str, retry_after: int) -> None:
    headers = [(b"content-type", b"application/json"), (b"retry-after", str(retry_after).encode())]
    await _respond(send, status, headers, json.dumps({"detail": detail}).encode())
