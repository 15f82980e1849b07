"""The Django admin for jobs and workers: read-only history, guarded actions, queue health.

Every change goes through the same atomic statements the API uses
(``JobQuerySet.retry()``/``cancel()``, ``purge.purge_ids()``), so an admin
click can never race a worker into a double run. The job list is built to
stay fast on a table of millions of rows: no full COUNT, filter choices from
recent rows only, and a date drill-down that never scans the table.
"""

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.functions import Cast, Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobqueue import health, queues
from jobqueue.admin_list import EstimatedCountPaginator, RecentValuesFilter
from jobqueue.backend import QUEUE_NAME_PATTERN
from jobqueue.models import FINISHED, Job, JobStatus, Schedule, Worker
from jobqueue.purge import purge_ids

RETRYABLE = {JobStatus.FAILED, JobStatus.CANCELLED}
CANCELLABLE = {JobStatus.QUEUED, JobStatus.RUNNING}


class QueueFilter(RecentValuesFilter):
    title = "queue"
    parameter_name = "queue"


class TaskFilter(RecentValuesFilter):
    title = "task"
    parameter_name = "task"


def pretty_json(value: Any) -> SafeString:
    return format_html('<pre class="jq-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True))


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "task",
        "status_badge",
        "progress_bar",
        "queue",
        "priority",
        "attempts_used",
        "created_at",
        "duration",
        "worker",
    ]
    list_display_links = ["id", "task"]
    list_filter = ["status", QueueFilter, TaskFilter]
    list_select_related = ["worker"]
    date_hierarchy = "created_at"
    search_fields = ["task"]  # the real search is get_search_results()
    search_help_text = "A job id, part of a task path, or text from an error."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    actions = ["retry_jobs", "cancel_jobs", "purge_jobs"]
    fieldsets = [
        (None, {"fields": ["task", "status_badge", "queue", "priority", "owner", "worker"]}),
        ("Progress", {"fields": ["progress_bar", "progress_message", "cancel_requested"]}),
        ("Arguments", {"fields": ["args_json", "kwargs_json"]}),
        ("Outcome", {"fields": ["result_json", "attempts_used", "error_history"]}),
        ("Timeline", {"fields": ["timeline", "run_history"]}),
    ]
    readonly_fields = [
        "status_badge",
        "progress_bar",
        "args_json",
        "kwargs_json",
        "result_json",
        "attempts_used",
        "error_history",
        "timeline",
        "run_history",
    ]

    class Media:
        css = {"all": ["jobqueue/admin.css"]}

    # --- permissions: read-only rows; each change is its own permission ---

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False  # finished jobs go through purge, which never deletes unfinished ones

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobqueue.retry_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobqueue.cancel_job")

    def has_purge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobqueue.purge_jobs")

    # --- list columns ---

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> SafeString:
        cancel = " (cancel requested)" if job.cancel_requested and not job.is_finished else ""
        return format_html(
            '<span class="jq-status jq-{}">{}{}</span>',
            job.status,
            job.get_status_display(),
            cancel,
        )

    @admin.display(description="progress")
    def progress_bar(self, job: Job) -> SafeString:
        percent = job.progress_percent
        if percent is None:
            percent = 100.0 if job.status == JobStatus.SUCCEEDED else 0.0
        percent = max(0.0, min(100.0, percent))
        return format_html(
            '<span class="jq-progress" title="{}"><span class="jq-progress-fill jq-{}" '
            'style="width: {}%"></span></span> <span class="jq-progress-label">{}%</span>',
            job.progress_message,
            job.status,
            f"{percent:.0f}",
            f"{percent:.0f}",
        )

    @admin.display(description="attempts")
    def attempts_used(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        return seconds(job.elapsed_seconds)

    # --- detail fields ---

    @admin.display(description="args")
    def args_json(self, job: Job) -> SafeString:
        return pretty_json(job.args)

    @admin.display(description="kwargs")
    def kwargs_json(self, job: Job) -> SafeString:
        return pretty_json(job.kwargs)

    @admin.display(description="result")
    def result_json(self, job: Job) -> SafeString:
        return pretty_json(job.result)

    @admin.display(description="errors, attempt by attempt")
    def error_history(self, job: Job) -> SafeString | str:
        if not job.errors:
            return "none"
        return format_html_join(
            "",
            '<div class="jq-error"><strong>attempt {}</strong> at {}: <code>{}</code>: {}'
            '<pre class="jq-traceback">{}</pre></div>',
            (
                (
                    error.get("attempt", "?"),
                    error.get("at", "?"),
                    error.get("type", ""),
                    error.get("message", ""),
                    error.get("traceback", "") or "(no traceback)",
                )
                for error in job.errors
            ),
        )

    @admin.display(description="timeline")
    def timeline(self, job: Job) -> SafeString:
        events = [
            ("created", job.created_at),
            ("scheduled", job.scheduled_at),
            ("started", job.started_at),
            ("last progress", job.progress_updated_at),
            ("last heartbeat", job.heartbeat_at),
            ("finished", job.finished_at),
        ]
        return format_html(
            '<table class="jq-timeline">{}</table>',
            format_html_join(
                "", "<tr><th>{}</th><td>{}</td></tr>", ((n, at) for n, at in events if at)
            ),
        )

    @admin.display(description="attempts")
    def run_history(self, job: Job) -> SafeString | str:
        """Where and when each attempt ran (kept after the worker's own row is gone)."""
        if not job.runs:
            return "none ended yet"
        return format_html(
            '<table class="jq-runs"><tr><th>attempt</th><th>worker</th><th>started</th>'
            "<th>ended</th><th>outcome</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        run.get("attempt", "?"),
                        run.get("worker") or f"worker #{run.get('worker_id')}",
                        run.get("started_at") or "",
                        run.get("finished_at") or "",
                        run.get("outcome", ""),
                    )
                    for run in job.runs
                ),
            ),
        )

    # --- search: an id exactly, else task path or error text ---

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip().lstrip("#")
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(id=int(term)), False
        errors_text = Cast("errors", TextField())
        return queryset.annotate(errors_text=errors_text).filter(
            Q(task__icontains=term) | Q(errors_text__icontains=term)
        ), False

    # --- actions ---

    @admin.action(permissions=["retry"], description="Retry selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        changed = queryset.retry()  # type: ignore[attr-defined]
        self.message_user(
            request, f"Re-queued {len(changed)} jobs (only failed or cancelled ones)."
        )

    @admin.action(permissions=["cancel"], description="Cancel selected queued or running jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        changed = queryset.cancel()  # type: ignore[attr-defined]
        self.message_user(
            request, f"Cancelled {len(changed)} jobs (running ones stop at their next check)."
        )

    @admin.action(permissions=["purge"], description="Purge selected finished jobs")
    def purge_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = list(queryset.filter(status__in=FINISHED).values_list("id", flat=True))
        deleted = purge_ids(ids)
        self.message_user(request, f"Purged {deleted} finished jobs (others are kept).")

    # --- detail page buttons and the health page ---

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("health/", wrap(self.health_view), name="jobqueue_job_health"),
            path(
                "health/<str:queue>/<str:verb>/",
                wrap(self.pause_view),
                name="jobqueue_queue_pause",
            ),
            path("<int:pk>/retry/", wrap(self.retry_view), name="jobqueue_job_retry"),
            path("<int:pk>/cancel/", wrap(self.cancel_view), name="jobqueue_job_cancel"),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        status = (
            Job.objects.filter(pk=object_id).values_list("status", flat=True).first()
            if object_id.isdigit()
            else None
        )
        extra = {
            "can_retry": status in RETRYABLE and self.has_retry_permission(request),
            "can_cancel": status in CANCELLABLE and self.has_cancel_permission(request),
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._change_one(request, pk, "retry", self.has_retry_permission(request))

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._change_one(request, pk, "cancel", self.has_cancel_permission(request))

    def _change_one(self, request: HttpRequest, pk: int, verb: str, allowed: bool) -> HttpResponse:
        """Retry or cancel one job from its detail page, under the action's own permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not allowed:
            raise PermissionDenied
        job = get_object_or_404(Job.objects.only("id"), pk=pk)
        if getattr(Job.objects.filter(pk=job.pk), verb)():
            done = {"retry": "re-queued", "cancel": "cancelled"}[verb]
            self.message_user(request, f"Job {pk} {done}.")
        else:
            self.message_user(
                request,
                f"Job {pk} was not changed: its status does not allow it.",
                messages.WARNING,
            )
        return HttpResponseRedirect(reverse("admin:jobqueue_job_change", args=[pk]))

    def pause_view(self, request: HttpRequest, queue: str, verb: str) -> HttpResponse:
        """Pause or resume a queue from the health page (the pause_queue permission)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("jobqueue.pause_queue") or verb not in ("pause", "resume"):
            raise PermissionDenied
        if not QUEUE_NAME_PATTERN.match(queue):
            raise Http404(f"{queue!r} is not a queue name")
        if verb == "pause":
            queues.pause(queue, by=request.user.get_username())
            self.message_user(request, f"Paused {queue}: no worker claims its jobs now.")
        else:
            queues.resume(queue)
            self.message_user(request, f"Resumed {queue}.")
        return HttpResponseRedirect(reverse("admin:jobqueue_job_health"))

    def health_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue and worker health",
            "opts": self.model._meta,
            "queues": health.queue_rows(),
            "chart": health.throughput_chart(health.throughput()),
            "workers": health.worker_rows(),
            "can_pause": request.user.has_perm("jobqueue.pause_queue"),
            "now": timezone.now(),
        }
        return TemplateResponse(request, "admin/jobqueue/health.html", context)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "hostname",
        "pid",
        "queues",
        "concurrency",
        "started_at",
        "last_heartbeat",
        "in_hand",
        "lost",
    ]
    list_filter = [("lost_at", admin.EmptyFieldListFilter)]

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

    @admin.display(description="jobs in hand", ordering="in_hand")
    def in_hand(self, worker: Worker) -> int:
        return worker.in_hand  # type: ignore[attr-defined]

    @admin.display(description="lost", boolean=True)
    def lost(self, worker: Worker) -> bool:
        return health.is_lost(worker)


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
        return schedule.declared.task

    @admin.display(description="cron")
    def cron(self, schedule: Schedule) -> str:
        return schedule.declared.cron

    @admin.display(description="time zone")
    def time_zone(self, schedule: Schedule) -> str:
        return str(schedule.declared.timezone)

    @admin.display(description="last run")
    def last_job_link(self, schedule: Schedule) -> SafeString | str:
        if schedule.last_job_id is None:
            return "—"
        url = reverse("admin:jobqueue_job_change", args=[schedule.last_job_id])
        status = schedule.last_job.status if schedule.last_job else ""
        return format_html('<a href="{}">#{} {}</a>', url, schedule.last_job_id, status)

    @admin.display(description="next run")
    def next_run_at(self, schedule: Schedule) -> Any:
        return schedule.next_run_at or "off"

    @admin.action(description="Enable the selected schedules", permissions=["change"])
    def enable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        n = queryset.enable()  # type: ignore[attr-defined]
        self.message_user(request, f"Enabled {n} schedule(s); they run from their next tick.")

    @admin.action(description="Disable the selected schedules", permissions=["change"])
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        n = queryset.disable()  # type: ignore[attr-defined]
        self.message_user(request, f"Disabled {n} schedule(s).")
