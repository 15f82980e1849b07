"""The admin for periodic schedules: as declared in settings, with enable and disable."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobqueue.models import Schedule
from jobqueue.scheduling.periodic import ShownSchedule


def shown(schedule: Schedule) -> ShownSchedule:
    """The row beside its declaration, built once per row and kept on it.

    Four of the list's columns read the declaration, and building it parses the
    settings' entry (its cron, time zone and task) each time; the changelist fetches
    its rows afresh for every request, so what is kept here lasts one page.
    """
    kept: ShownSchedule | None = getattr(schedule, "_shown", None)
    if kept is None:
        kept = schedule._shown = ShownSchedule.of(schedule)  # type: ignore[attr-defined]
    return kept


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    """The periodic schedules declared in settings, with their last and next run.

    Switching one on or off is an action (kept in the database, so every worker
    sees it at its next look); the schedules themselves live in settings, so
    nothing else here can be changed, added or deleted.
    """

    list_display = [
        "name",
        "task",
        "cron",
        "time_zone",
        "enabled",
        "last_tick",
        "last_job_link",
        "next_run_at",
    ]
    list_display_links = None
    actions = ["enable_schedules", "disable_schedules"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return Schedule.objects.configured().select_related("last_job")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        """The list's enable/disable actions need it; a schedule's own page stays read-only."""
        return obj is None and super().has_change_permission(request)

    @admin.display(description="task")
    def task(self, schedule: Schedule) -> str:
        return shown(schedule).declared.task

    @admin.display(description="cron")
    def cron(self, schedule: Schedule) -> str:
        return shown(schedule).declared.cron

    @admin.display(description="time zone")
    def time_zone(self, schedule: Schedule) -> str:
        return str(shown(schedule).declared.timezone)

    @admin.display(description="last run")
    def last_job_link(self, schedule: Schedule) -> SafeString | str:
        if schedule.last_job_id is None:
            return "—"
        url = reverse("admin:jobqueue_job_change", args=[schedule.last_job_id])
        status = schedule.last_job.status if schedule.last_job else ""
        return format_html('<a href="{}">#{} {}</a>', url, schedule.last_job_id, status)

    @admin.display(description="next run")
    def next_run_at(self, schedule: Schedule) -> Any:
        return shown(schedule).next_run_at or "off"

    @admin.action(description="Enable the selected schedules", permissions=["change"])
    def enable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        n = queryset.enable()  # type: ignore[attr-defined]
        self.message_user(request, f"Enabled {n} schedule(s); they run from their next tick.")

    @admin.action(description="Disable the selected schedules", permissions=["change"])
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        n = queryset.disable()  # type: ignore[attr-defined]
        self.message_user(request, f"Disabled {n} schedule(s).")
