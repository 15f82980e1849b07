"""The tasks resource: the tasks the API exposes, with their parameters."""

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from jobqueue.api.schema import (
    errors,
)
from jobqueue.api.serializers.tasks import ExposedTaskSerializer
from jobqueue.api.tasks import exposed_tasks


class TaskViewSet(viewsets.ViewSet):
    """The tasks that may be submitted, and the arguments each takes."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: ExposedTaskSerializer(many=True), **errors(401)})
    def list(self, request: Request) -> Response:
        return Response(ExposedTaskSerializer(exposed_tasks().values(), many=True).data)
