"""The admin for jobs: read-only history, guarded retry, cancel and purge, queue health.

Every change goes through the same atomic statements the API uses
(``JobQuerySet.retry()``/``cancel()``, ``purge.purge_ids()``), so an admin
click can never race a worker into a double run. The job list is built to
stay fast on a table of millions of rows: no full COUNT, filter choices from
recent rows only, and a date drill-down that never scans the table.
"""

from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, QuerySet
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

from jobqueue import health, queries
from jobqueue.admin import audit, charts, times
from jobqueue.admin.bulk import (
    CANCEL,
    CANCELLABLE,
    PURGE,
    RETRY,
    RETRYABLE,
    BulkAction,
    SelectedGroup,
)
from jobqueue.admin.changelist import (
    COUNT_CAP,
    EstimatedCountPaginator,
    StatusFilter,
)
from jobqueue.admin.display import QueueFilter, TaskFilter, is_scheduled, pretty_json, worker_link
from jobqueue.models import FINISHED, Job, JobQuerySet, JobStatus
from jobqueue.purge import purge_ids
from jobqueue.queue_names import is_queue_name
from jobqueue.scheduling import pauses


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
        "due",
        "duration",
        "worker_name",
    ]
    list_display_links = ["id", "task"]
    list_filter = [StatusFilter, QueueFilter, TaskFilter]
    list_select_related = ["worker"]
    date_hierarchy = "created_at"
    search_fields = ["task"]  # the real search is get_search_results()
    search_help_text = (
        "Words from the task path, an error's type or message, or the arguments "
        "(keys and values); a number also finds the job with that id."
    )
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
    # A job that has errors shows them, and where each attempt ran, right below its
    # summary; its progress, empty or stale by then, is folded away.
    failed_fieldsets = [
        (None, {"fields": ["task", "status_badge", "queue", "priority", "owner", "worker"]}),
        ("Errors and attempts", {"fields": ["attempts_used", "error_history", "run_history"]}),
        ("Arguments", {"fields": ["args_json", "kwargs_json"]}),
        ("Timeline", {"fields": ["timeline"]}),
        (
            "Progress and result",
            {
                "fields": ["progress_bar", "progress_message", "cancel_requested", "result_json"],
                "classes": ["collapse"],
            },
        ),
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

    def get_fieldsets(self, request: HttpRequest, obj: Job | None = None) -> Any:
        return self.failed_fieldsets if obj is not None and obj.errors else self.fieldsets

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        """The list without the admin's app sidebar: at 1,400 px its columns need the room."""
        context = {"is_nav_sidebar_enabled": False, **(extra_context or {})}
        return super().changelist_view(request, context)

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
        if is_scheduled(job):
            return format_html('<span class="jq-status jq-scheduled">Scheduled</span>{}', cancel)
        return format_html(
            '<span class="jq-status jq-{}">{}{}</span>',
            job.status,
            job.get_status_display(),
            cancel,
        )

    @admin.display(description="due", ordering="scheduled_at")
    def due(self, job: Job) -> SafeString | str:
        """When a scheduled job becomes due, and how long until then; blank once it is."""
        if not is_scheduled(job):
            return ""
        return format_html(
            '<span title="{}">{}</span>',
            times.absolute(job.scheduled_at),
            times.relative(job.scheduled_at),
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

    @admin.display(description="worker")
    def worker_name(self, job: Job) -> SafeString | str:
        """The worker running the job, else the one that ran its last attempt."""
        if job.worker is not None:
            return str(job.worker)
        if job.runs:
            return format_html('<span class="jq-past">{}</span>', job.runs[-1].get("worker", ""))
        return ""

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        return times.duration(job.elapsed_seconds)

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
                    times.absolute(error.get("at")),
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
                "",
                "<tr><th>{}</th><td>{}</td></tr>",
                ((n, times.both(at)) for n, at in events if at),
            ),
        )

    @admin.display(description="where and when each attempt ran")
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
                        worker_link(run),
                        times.absolute(run.get("started_at")),
                        times.absolute(run.get("finished_at")),
                        run.get("outcome", ""),
                    )
                    for run in job.runs
                ),
            ),
        )

    # --- search: the words of a job as staff see them, or its id ---

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        """Jobs with every word of the term in their task, error types and messages, or
        argument keys and values (the newest ``COUNT_CAP``); a number is also a job id."""
        term = search_term.strip()
        if not term:
            return queryset, False
        with connection.cursor() as cursor:
            ids = queries.search_ids(cursor, term, COUNT_CAP)
        if term.lstrip("#").isdigit():
            ids.append(int(term.lstrip("#")))
        return queryset.filter(id__in=ids), False

    # --- actions ---

    @admin.action(permissions=["retry"], description="Retry selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return self.run_bulk_action(request, queryset, RETRY, JobQuerySet.retry, audit.log_retried)

    @admin.action(permissions=["cancel"], description="Cancel selected queued or running jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return self.run_bulk_action(
            request, queryset, CANCEL, JobQuerySet.cancel, audit.log_cancelled
        )

    @admin.action(permissions=["purge"], description="Purge selected finished jobs")
    def purge_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        def purge(jobs: JobQuerySet) -> list[tuple[int, str, str]]:
            return purge_ids(list(jobs.filter(status__in=FINISHED).values_list("id", flat=True)))

        return self.run_bulk_action(request, queryset, PURGE, purge, audit.log_purged)

    def run_bulk_action[T](
        self,
        request: HttpRequest,
        queryset: QuerySet[Job],
        action: BulkAction,
        change: Callable[[JobQuerySet], list[T]],
        log: Callable[[Any, list[T], str], None],
    ) -> HttpResponse | None:
        """Ask first where ``action`` wants it, then ``change`` the jobs, log and say so.

        ``change`` is one atomic statement that returns what it changed, and both the
        audit ``log`` and the message are given exactly that: they count the jobs really
        changed, not the selection.
        """
        if confirmation := self.confirmation(request, queryset, action):
            return confirmation
        changed = change(cast(JobQuerySet, queryset))  # the admin's queryset is Job.objects'
        log(request.user, changed, "from the job list")
        self.message_user(request, action.done.format(n=len(changed)))
        return None

    def confirmation(
        self, request: HttpRequest, queryset: QuerySet[Job], action: BulkAction
    ) -> TemplateResponse | None:
        """The page between choosing a bulk action and running it, as Django's delete has.

        It counts the selection per status and queue, marks what the action would
        change, and posts the same selection back with ``post=yes``; only that second
        POST runs the action (None here). Purge always asks; retry and cancel ask when
        more than one job is selected ("select all" counts as more than one).
        """
        if request.POST.get("post") == "yes":
            return None
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        select_across = request.POST.get("select_across") == "1"
        if not action.always_confirm and not select_across and len(selected) <= 1:
            return None
        groups = [
            SelectedGroup(
                status=status, queue=queue, jobs=jobs, changes=status in action.applies_to
            )
            for status, queue, jobs in queryset.order_by()
            .values("status", "queue")
            .annotate(jobs=Count("id"))
            .order_by("status", "queue")
            .values_list("status", "queue", "jobs")
        ]
        changing = sum(g.jobs for g in groups if g.changes)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.verb.capitalize()} {changing} jobs?",
            "opts": self.model._meta,
            "action": action,
            "groups": groups,
            "changing": changing,
            "kept": sum(g.jobs for g in groups) - changing,
            "selected": selected,
            "select_across": select_across,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/jobqueue/job/action_confirmation.html", context)

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
        status, owner = (
            Job.objects.filter(pk=object_id).values_list("status", "owner").first()
            if object_id.isdigit()
            else None
        ) or (None, None)
        extra = {
            "can_retry": status in RETRYABLE and self.has_retry_permission(request),
            "can_cancel": status in CANCELLABLE and self.has_cancel_permission(request),
            # The live page /jobs/<id>/ is its owner's only (a 404 for anyone else).
            "live_page": owner is not None and owner == request.user.pk,
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
        if changed := getattr(Job.objects.filter(pk=job.pk), verb)():
            log = {"retry": audit.log_retried, "cancel": audit.log_cancelled}[verb]
            log(request.user, changed, "from the job's page")
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
        if not is_queue_name(queue):
            raise Http404(f"{queue!r} is not a queue name")
        if verb == "pause":
            pauses.pause(queue, by=request.user.get_username())
            self.message_user(request, f"Paused {queue}: no worker claims its jobs now.")
        else:
            pauses.resume(queue)
            self.message_user(request, f"Resumed {queue}.")
        return HttpResponseRedirect(reverse("admin:jobqueue_job_health"))

    def health_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        health.record_sample()  # the workers sample too; this keeps a watched page current
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue and worker health",
            "opts": self.model._meta,
            "queues": health.queue_rows(),
            "chart": charts.throughput_chart(health.throughput()),
            "depth_hour": charts.depth_chart(
                health.depth(timedelta(hours=1), timedelta(minutes=1)),
                timedelta(hours=1),
                "jobs waiting and running over the last hour",
            ),
            "depth_day": charts.depth_chart(
                health.depth(timedelta(hours=24), timedelta(minutes=15)),
                timedelta(hours=24),
                "jobs waiting and running over the last 24 hours",
            ),
            "timings": dict(zip(("queue", "task"), health.timings(), strict=True)),
            "timings_sample": health.TIMINGS_SAMPLE,
            "workers": health.worker_rows(),
            "can_pause": request.user.has_perm("jobqueue.pause_queue"),
            "now": timezone.now(),
        }
        return TemplateResponse(request, "admin/jobqueue/health.html", context)
