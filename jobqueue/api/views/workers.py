"""The workers resource: the live workers, and the lost ones for a while."""

from datetime import timedelta
from typing import Any

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from jobqueue.api.schema import (
    errors,
)
from jobqueue.api.serializers.workers import WorkerSerializer
from jobqueue.models import JobStatus, Worker

# Lost workers stay listed this long after they stopped heart-beating.
LOST_WORKER_WINDOW = timedelta(hours=1)


class WorkerViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Live workers and those lost in the last hour, with the jobs they hold (staff only)."""

    serializer_class = WorkerSerializer
    permission_classes = [IsAdminUser]
    pagination_class = None

    def get_queryset(self) -> QuerySet[Worker]:
        cutoff = timezone.now() - LOST_WORKER_WINDOW
        return Worker.objects.filter(Q(lost_at__isnull=True) | Q(lost_at__gte=cutoff)).annotate(
            jobs_in_hand=ArrayAgg(
                "jobs__id",
                filter=Q(jobs__status=JobStatus.RUNNING),
                default=[],
                order_by="jobs__id",
            )
        )

    @extend_schema(responses={200: WorkerSerializer(many=True), **errors(401, 403)})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workers = list(self.get_queryset())
        for worker in workers:
            worker.state = "lost" if worker.lost_at else "live"  # type: ignore[attr-defined]
        return Response(WorkerSerializer(workers, many=True).data)
