"""The queues resource: each queue's figures, limits and pause, and pausing it."""

from typing import Any

from django.db import connections
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from jobqueue import queries
from jobqueue.api.permissions import CanPauseQueues
from jobqueue.api.schema import (
    errors,
)
from jobqueue.api.serializers.queues import QueuePauseSerializer, QueueSerializer
from jobqueue.models import Job, QueueLimit, QueuePause
from jobqueue.queue_names import RULE, is_queue_name
from jobqueue.scheduling import pauses
from jobqueue.scheduling.limits import format_rate


class QueueViewSet(viewsets.ViewSet):
    """Per queue: the backlog, what runs, throughput and run time lately, and whether it is
    paused; staff with the pause_queue permission pause and resume queues."""

    permission_classes = [IsAuthenticated]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"  # checked by _queue_name, so that a bad one is a JSON 404

    def get_permissions(self) -> list[Any]:
        if self.action in ("pause", "resume"):
            return [CanPauseQueues()]
        return super().get_permissions()

    @extend_schema(responses={200: QueueSerializer(many=True), **errors(401)})
    def list(self, request: Request) -> Response:
        with connections[Job.objects.db].cursor() as cursor:
            rows = queries.queue_stats(cursor)
        paused = pauses.paused()
        limits = {limit.queue: limit for limit in QueueLimit.objects.all()}
        stats = {r[0]: r for r in rows}
        for name in (paused.keys() | limits.keys()) - stats.keys():  # nothing in it
            stats[name] = (name, *IDLE_QUEUE)
        figures = [_queue_figures(stats[q], paused.get(q), limits.get(q)) for q in sorted(stats)]
        return Response(QueueSerializer(figures, many=True).data)

    @extend_schema(request=None, responses={200: QueuePauseSerializer, **errors(401, 403, 404)})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, name: str) -> Response:
        """Pause the queue: from this answer on no worker claims its jobs (running ones finish;
        enqueuing still works)."""
        changed = pauses.pause(_queue_name(name), by=request.user.get_username())
        return Response({"queue": name, "paused": True, "changed": changed})

    @extend_schema(request=None, responses={200: QueuePauseSerializer, **errors(401, 403, 404)})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, name: str) -> Response:
        """Resume the queue; its workers are woken at once."""
        changed = pauses.resume(_queue_name(name))
        return Response({"queue": name, "paused": False, "changed": changed})


def _queue_name(name: str) -> str:
    if not is_queue_name(name):
        raise NotFound(f"{name!r} is not a queue name ({RULE}).")
    return name


# The figures of a queue with no job in it (queries.QUEUE_STATS' columns after the name).
IDLE_QUEUE = (0, 0, None, 0, 0, 0, 0, 0, None, 0, None)


def _queue_figures(
    row: tuple, pause: QueuePause | None, limit: QueueLimit | None
) -> dict[str, Any]:
    (queue, queued, ready, oldest, running, succeeded, failed, cancelled) = row[:8]
    finished_5m, mean_5m, finished_60m, mean_60m = row[8:]

    def window(finished: int, mean: Any, minutes: int) -> dict[str, Any]:
        return {
            "finished": finished,
            "throughput_per_minute": round(finished / minutes, 3),
            "mean_duration_seconds": None if mean is None else round(float(mean), 3),
        }

    return {
        "queue": queue,
        "paused": pause is not None,
        "paused_at": None if pause is None else pause.paused_at,
        "limits": None
        if limit is None
        else {
            "concurrency": limit.concurrency,
            "rate": format_rate(limit.rate, limit.per) or None,
            "source": limit.source,
        },
        "counts": {
            "queued": queued,
            "running": running,
            "succeeded": succeeded,
            "failed": failed,
            "cancelled": cancelled,
        },
        "ready": ready,
        "oldest_queued_age_seconds": None if oldest is None else round(float(oldest), 3),
        "running": running,
        "last_5_minutes": window(finished_5m, mean_5m, 5),
        "last_60_minutes": window(finished_60m, mean_60m, 60),
    }
