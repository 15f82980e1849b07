"""The admin for workers: which are live, what each holds, which were lost."""

from django.contrib import admin
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    HttpRequest,
)
from django.utils.safestring import SafeString

from jobqueue import health
from jobqueue.admin.display import job_links
from jobqueue.models import Job, Worker

# What a worker registers and keeps fresh itself. The list and each worker's page both
# lead with these, from this one tuple so that the two keep the same fields in one order.
REGISTERED = ("hostname", "pid", "queues", "concurrency", "started_at", "last_heartbeat")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [*REGISTERED, "in_hand", "lost"]
    list_filter = [("lost_at", admin.EmptyFieldListFilter)]
    fields = [*REGISTERED, "lost_at", "current_jobs", "recent_jobs"]
    readonly_fields = ["current_jobs", "recent_jobs"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        # A correlated count over running jobs only; a join would read every job of a worker.
        running = (
            Job.objects.running()
            .filter(worker=OuterRef("pk"))
            .order_by()
            .values("worker")
            .annotate(n=Count("id"))
            .values("n")
        )
        return super().get_queryset(request).annotate(in_hand=Coalesce(Subquery(running), 0))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        """Only a lost worker's row may go, one at a time from its page: a live worker
        would find its row gone (it registers again, but its jobs show no worker until its
        next heartbeat). Without a row (the list's bulk delete) it is refused, as the bulk
        action could not tell live workers from lost ones."""
        if obj is None or not health.is_lost(obj):
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="running now")
    def current_jobs(self, worker: Worker) -> SafeString | str:
        return job_links(Job.objects.running().filter(worker=worker).order_by("id")[:100])

    @admin.display(description="finished in the last hour (newest 20)")
    def recent_jobs(self, worker: Worker) -> SafeString | str:
        return job_links(health.recent_jobs_of(worker))

    @admin.display(description="jobs in hand", ordering="in_hand")
    def in_hand(self, worker: Worker) -> int:
        return worker.in_hand  # type: ignore[attr-defined]

    @admin.display(description="lost", boolean=True)
    def lost(self, worker: Worker) -> bool:
        return health.is_lost(worker)
