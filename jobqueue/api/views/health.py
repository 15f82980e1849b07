"""The health probe: whether the database answers, and with ?ready=1 the migrations."""

import time
from typing import Any

from django.db import DatabaseError
from django.db.models import Count, Q
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobqueue.api.schema import (
    READY_PARAM,
    errors,
)
from jobqueue.api.serializers.health import HealthSerializer
from jobqueue.health import pending_migrations
from jobqueue.models import Worker


class HealthView(APIView):
    """200 when the database answers, 503 when it does not; open to load balancers.

    ``?ready=1`` is the readiness probe: also 503 while migrations remain to be
    applied, so that a new release takes traffic only once its schema is there.
    """

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        parameters=[READY_PARAM],
        responses={
            200: HealthSerializer,
            **errors(400),
            503: OpenApiResponse(
                HealthSerializer,
                description="The database is unreachable (or, with ready, migrations are pending).",
            ),
        },
    )
    def get(self, request: Request) -> Response:
        ready = _ready_asked(request)
        started = time.monotonic()
        try:
            workers = Worker.objects.aggregate(
                live=Count("id", filter=Q(lost_at__isnull=True)),
                lost=Count("id", filter=Q(lost_at__isnull=False)),
            )
            pending = pending_migrations() if ready else None
        except DatabaseError as e:
            down = {"status": "unavailable", "database": {"ok": False, "error": type(e).__name__}}
            return Response(down, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        latency = round((time.monotonic() - started) * 1000, 2)
        body: dict[str, Any] = {
            "status": "ok",
            "database": {"ok": True, "latency_ms": latency},
            "workers": workers,
        }
        if pending is None:
            return Response(body)
        body["migrations"] = {"ok": not pending, "pending": pending}
        if pending:
            body["status"] = "unavailable"
            return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(body)


def _ready_asked(request: Request) -> bool:
    """Whether ``?ready=`` asks for the readiness probe; a value that is no boolean is a 400."""
    values = request.query_params.getlist("ready")
    if not values:
        return False
    if len(values) > 1 or values[0].lower() not in READY_VALUES:
        raise ValidationError({"ready": ["Must be true or false (or 1 or 0)."]})
    return READY_VALUES[values[0].lower()]


READY_VALUES = {"true": True, "1": True, "false": False, "0": False}
