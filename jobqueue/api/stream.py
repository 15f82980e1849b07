"""What the job's watchers are sent: server-sent events, their ids, and the watch grant.

Shared by the sync view that authorises a watcher and answers its first
state (``JobViewSet.events`` and the ``?wait=`` poll) and by the async
watching layer that keeps the request open (``jobqueue.api.watching``).
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from rest_framework.renderers import BaseRenderer

# The WSGI environ key under which the view hands its grant to the watching layer.
GRANT_KEY = "jobqueue.watch"
# Milliseconds an EventSource waits before it reconnects after the stream ends or breaks.
RETRY_MS = 1000
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchGrant:
    """The view's verdict on a watcher: who it is and what it has been sent so far.

    The view has checked authentication and ownership (another user's job
    is a 404 and gets no grant); the watching layer counts the watcher
    against ``user_id``'s limit and sends later states from ``seen`` on.
    """

    job_id: int
    user_id: int
    show_traceback: bool
    seen: str
    finished: bool


def event_id(job: dict[str, Any]) -> str:
    """An id for the job's visible state: what a watcher is sent a new event for.

    The state is what changes when the job does (status, attempts, the
    cancel request, progress), not the clock-driven figures such as
    ``elapsed_seconds``. Equal ids mean nothing new to send, so a client
    that reconnects with ``Last-Event-ID`` gets no repeat.
    """
    state = [job["status"], job["attempts"], job["cancel_requested"], job["progress"]]
    return hashlib.blake2b(json.dumps(state).encode(), digest_size=8).hexdigest()


def job_event(job: dict[str, Any], state: str | None = None) -> bytes:
    """One server-sent event carrying the job's JSON, with its state's id (``event_id``)."""
    return f"id: {state or event_id(job)}\ndata: {json.dumps(job)}\n\n".encode()


KEEP_ALIVE = b": keep-alive\n\n"


class EventStreamRenderer(BaseRenderer):
    """Renders the events route: the reconnection delay, then the job as an event.

    ``None`` as data means the client has already seen the job's state
    (``Last-Event-ID``): only the reconnection delay is sent. Errors are
    rendered as JSON (``JobViewSet.finalize_response``).
    """

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: dict[str, Any] | None = None,
    ) -> bytes:
        head = f"retry: {RETRY_MS}\n\n".encode()
        return head if data is None else head + job_event(data)
