"""The admin for queue limits: staff overrides of the limits settings declare."""

from typing import Any

from django.contrib import admin
from django.db import connection
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    HttpRequest,
)

from jobqueue import queries
from jobqueue.conf import get_settings
from jobqueue.models import Job, JobStatus, QueueLimit
from jobqueue.scheduling import limits


@admin.register(QueueLimit)
class QueueLimitAdmin(admin.ModelAdmin):
    """Global limits per queue: those of settings, and staff overrides made at run time.

    Opening the list writes the settings' limits first (as every worker does when it
    connects), so it shows what the claims obey. Saving a limit here makes it an
    override that settings leave alone; "Reset to settings" gives the queue back to
    them. Claims that start after a save obey it; running jobs are never stopped.
    """

    list_display = ["queue", "concurrency", "rate_display", "source", "running", "updated_at"]
    fields = ["queue", "concurrency", "rate", "per"]
    actions = ["reset_to_settings"]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        with connection.cursor() as cursor:
            queries.sync_limits(cursor, limits.specs(get_settings().QUEUES))
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[QueueLimit]:
        """Each queue's running jobs counted in the list's one query, not one query a row."""
        running = (
            Job.objects.filter(queue=OuterRef("queue"), status=JobStatus.RUNNING)
            .values("queue")
            .annotate(n=Count("id"))
            .values("n")
        )
        return super().get_queryset(request).annotate(running_now=Coalesce(Subquery(running), 0))

    def get_readonly_fields(self, request: HttpRequest, obj: QueueLimit | None = None) -> list:
        return ["queue"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: QueueLimit, form: Any, change: bool) -> None:
        obj.source = "admin"
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request: HttpRequest, obj: QueueLimit | None = None) -> bool:
        """Settings' limits come back with the next worker: reset them instead."""
        if obj is not None and obj.source == "settings":
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="rate")
    def rate_display(self, limit: QueueLimit) -> str:
        return limits.format_rate(limit.rate, limit.per) or "—"

    @admin.display(description="running now", ordering="running_now")
    def running(self, limit: QueueLimit) -> int:
        return limit.running_now  # type: ignore[attr-defined]

    @admin.action(description="Reset the selected limits to settings", permissions=["change"])
    def reset_to_settings(self, request: HttpRequest, queryset: QuerySet[QueueLimit]) -> None:
        n = queryset.filter(source="admin").delete()[0]
        with connection.cursor() as cursor:
            queries.sync_limits(cursor, limits.specs(get_settings().QUEUES))
        self.message_user(request, f"Reset {n} override(s); settings apply again.")
