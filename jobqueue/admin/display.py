"""How the admin shows a job's pieces: JSON, its worker, links to jobs, filters."""

import json
from collections.abc import Iterable
from typing import Any

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobqueue.admin.changelist import (
    RecentValuesFilter,
)
from jobqueue.models import Job, JobStatus


class QueueFilter(RecentValuesFilter):
    title = "queue"
    parameter_name = "queue"


class TaskFilter(RecentValuesFilter):
    title = "task"
    parameter_name = "task"


def pretty_json(value: Any) -> SafeString:
    """Indented JSON with non-ASCII text as written ("Müller", not "M\\u00fcller")."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre class="jq-json">{}</pre>', text)


def worker_link(run: dict[str, Any]) -> SafeString | str:
    """The worker (host:pid) of one attempt, linked to its page while its row is kept."""
    name = run.get("worker") or f"worker #{run.get('worker_id')}"
    if run.get("worker_id") is None:
        return str(name)
    url = reverse("admin:jobqueue_worker_change", args=[run["worker_id"]])
    return format_html('<a href="{}">{}</a>', url, name)


def job_links(jobs: Iterable[Job]) -> SafeString | str:
    """Jobs as a list of links to their admin pages, each with its status."""
    items = format_html_join(
        "",
        '<li><a href="{}">{}</a> <span class="jq-status jq-{}">{}</span></li>',
        (
            (
                reverse("admin:jobqueue_job_change", args=[j.pk]),
                f"{j.task} #{j.pk}",
                j.status,
                j.status,
            )
            for j in jobs
        ),
    )
    return format_html('<ul class="jq-job-links">{}</ul>', items) if items else "none"


def is_scheduled(job: Job) -> bool:
    """Queued but not yet due: delayed, or waiting out a retry's backoff."""
    return job.status == JobStatus.QUEUED and job.scheduled_at > timezone.now()
