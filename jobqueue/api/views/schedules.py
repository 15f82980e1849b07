"""The schedules resource: each periodic schedule, declared and where it stands."""

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from jobqueue.api.schema import (
    errors,
)
from jobqueue.api.serializers.schedules import ScheduleSerializer
from jobqueue.models import Schedule
from jobqueue.scheduling.periodic import ShownSchedule


class ScheduleViewSet(viewsets.ViewSet):
    """The periodic schedules with their last and next run (staff only)."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: ScheduleSerializer(many=True), **errors(401, 403)})
    def list(self, request: Request) -> Response:
        schedules = [ShownSchedule.of(row) for row in Schedule.objects.configured()]
        return Response(ScheduleSerializer(schedules, many=True).data)
